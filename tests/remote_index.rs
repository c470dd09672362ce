//! The Qdrant server backend against a real server: runs when QDRANT_URL is set (e.g.
//! `QDRANT_URL=http://127.0.0.1:6334 cargo test --release --test remote_index`), and says it was skipped
//! otherwise (no Qdrant server is reachable from CI).

use dongcha::index::remote::RemoteIndex;
use dongcha::index::{ReviewPayload, ReviewPoint, SearchFilter, VectorIndex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_search_filter_delete_on_a_qdrant_server() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        eprintln!("QDRANT_URL not set: the Qdrant server test was skipped");
        return;
    };
    let collection = format!("dongcha_test_{}", std::process::id());
    let index =
        RemoteIndex::open(&url, &collection, 4).expect("connects and creates the collection");
    let point = |id: u64, v: [f32; 4], sentiment: &str| ReviewPoint {
        id,
        vector: v.to_vec(),
        payload: ReviewPayload {
            customer_id: id as i64,
            product_id: Some(7),
            day: Some(20_000 + id as i64),
            rating: Some(4.0),
            sentiment: Some(sentiment.into()),
        },
    };
    index
        .upsert(&[
            point(1, [1.0, 0.0, 0.0, 0.0], "positive"),
            point(2, [0.9, 0.1, 0.0, 0.0], "negative"),
            point(3, [0.0, 1.0, 0.0, 0.0], "negative"),
        ])
        .unwrap();
    assert_eq!(index.count().unwrap(), 3);
    let hits = index
        .search(&[1.0, 0.0, 0.0, 0.0], &SearchFilter::default(), 2, false)
        .unwrap();
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [1, 2]);
    let neg = SearchFilter {
        sentiment: Some("negative".into()),
        ..Default::default()
    };
    let hits = index.search(&[1.0, 0.0, 0.0, 0.0], &neg, 5, true).unwrap();
    assert_eq!(hits[0].id, 2);
    assert_eq!(hits[0].payload.product_id, Some(7));
    assert_eq!(index.vectors(&[3]).unwrap()[0].0, 3);
    index.delete(&[1]).unwrap();
    assert_eq!(index.count().unwrap(), 2);
}
