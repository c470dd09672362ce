-- On PostgreSQL the fact tables' references (orders, reviews, social posts and search events to customers,
-- products and orders) are not foreign keys any more. PostgreSQL checks a foreign key with a trigger per
-- row written (a locking lookup of the referenced row): 14 s of a 32 s import of a million records on
-- 2 cores. These references are written only by imports and copies, from rows written or read in the same
-- transaction (imports run one at a time); no customer, product or order is ever deleted; and
-- `Store::dangling_references` (checked by the tests after every kind of import, crashes included, on
-- both backends) finds any that points nowhere. SQLite keeps its foreign keys: it checks them inline,
-- cheaply. The NLP tables keep theirs on both.
ALTER TABLE orders
    DROP CONSTRAINT IF EXISTS orders_customer_id_fkey,
    DROP CONSTRAINT IF EXISTS orders_product_id_fkey;
ALTER TABLE reviews
    DROP CONSTRAINT IF EXISTS reviews_customer_id_fkey,
    DROP CONSTRAINT IF EXISTS reviews_product_id_fkey,
    DROP CONSTRAINT IF EXISTS reviews_order_id_fkey;
ALTER TABLE social_posts
    DROP CONSTRAINT IF EXISTS social_posts_customer_id_fkey,
    DROP CONSTRAINT IF EXISTS social_posts_product_id_fkey;
ALTER TABLE search_events
    DROP CONSTRAINT IF EXISTS search_events_customer_id_fkey;
