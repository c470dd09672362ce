//! A Qdrant server or cluster through `qdrant-client` (gRPC): the scale-out backend, selected with
//! `[index] backend = "qdrant"` and `[index] url`. Same collection layout as the embedded index (one
//! unnamed cosine vector per review, the same payload and payload indexes).
//!
//! The [`VectorIndex`] trait is synchronous (the embedded engine is); calls are run on the current tokio
//! runtime with `block_in_place`, so this backend must be used from a multi-threaded runtime (the CLI's).

use qdrant_client::qdrant::vector_output::Vector as OutVector;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, GetPointsBuilder, PointId, PointStruct,
    PointsIdsList, Range, SearchParamsBuilder, SearchPointsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder, point_id::PointIdOptions,
};
use qdrant_client::{Payload, Qdrant};

use super::{Hit, IndexError, ReviewPoint, SearchFilter, VectorIndex};

pub struct RemoteIndex {
    client: Qdrant,
    collection: String,
    url: String,
    dim: usize,
    pub hnsw_ef: u64,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

impl RemoteIndex {
    /// Connects and creates the collection (with payload indexes) when it does not exist. The API key,
    /// if any, comes from the environment (`QDRANT_API_KEY`), never from config.
    pub fn open(url: &str, collection: &str, dim: usize) -> Result<Self, IndexError> {
        let fail = |reason: String| IndexError::Engine {
            path: format!("{url} collection {collection}"),
            reason,
        };
        let client = Qdrant::from_url(url)
            .api_key(std::env::var("QDRANT_API_KEY").ok())
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let index = Self {
            client,
            collection: collection.to_string(),
            url: url.to_string(),
            dim,
            hnsw_ef: 256,
        };
        let exists = block_on(index.client.collection_exists(collection))
            .map_err(|e| fail(e.to_string()))?;
        if !exists {
            block_on(
                index.client.create_collection(
                    CreateCollectionBuilder::new(collection)
                        .vectors_config(VectorParamsBuilder::new(dim as u64, Distance::Cosine)),
                ),
            )
            .map_err(|e| fail(e.to_string()))?;
            for (field, kind) in [
                ("product_id", FieldType::Integer),
                ("customer_id", FieldType::Integer),
                ("day", FieldType::Integer),
                ("rating", FieldType::Float),
                ("sentiment", FieldType::Keyword),
            ] {
                block_on(index.client.create_field_index(
                    CreateFieldIndexCollectionBuilder::new(collection, field, kind).wait(true),
                ))
                .map_err(|e| fail(e.to_string()))?;
            }
        }
        Ok(index)
    }

    fn fail(&self, e: impl ToString) -> IndexError {
        IndexError::Engine {
            path: format!("{} collection {}", self.url, self.collection),
            reason: e.to_string(),
        }
    }
}

fn filter_of(f: &SearchFilter) -> Option<Filter> {
    let mut must = Vec::new();
    if let Some(ids) = &f.product_ids {
        must.push(Condition::matches("product_id", ids.clone()));
    }
    if let Some(s) = &f.sentiment {
        must.push(Condition::matches("sentiment", s.clone()));
    }
    if f.since.is_some() || f.until.is_some() {
        must.push(Condition::range(
            "day",
            Range {
                gte: f.since.map(|d| super::day_number(d) as f64),
                lte: f.until.map(|d| super::day_number(d) as f64),
                ..Default::default()
            },
        ));
    }
    if f.min_rating.is_some() || f.max_rating.is_some() {
        must.push(Condition::range(
            "rating",
            Range {
                gte: f.min_rating,
                lte: f.max_rating,
                ..Default::default()
            },
        ));
    }
    (!must.is_empty()).then(|| Filter::must(must))
}

fn numeric_id(id: Option<PointId>) -> Option<u64> {
    match id?.point_id_options? {
        PointIdOptions::Num(n) => Some(n),
        PointIdOptions::Uuid(_) => None,
    }
}

impl VectorIndex for RemoteIndex {
    fn upsert(&self, points: &[ReviewPoint]) -> Result<(), IndexError> {
        if points.is_empty() {
            return Ok(());
        }
        let mut list = Vec::with_capacity(points.len());
        for p in points {
            super::check_dim(p.vector.len(), self.dim)?;
            let payload =
                Payload::try_from(serde_json::to_value(&p.payload).map_err(|e| self.fail(e))?)
                    .map_err(|e| self.fail(e))?;
            list.push(PointStruct::new(p.id, p.vector.clone(), payload));
        }
        block_on(
            self.client
                .upsert_points(UpsertPointsBuilder::new(&self.collection, list).wait(true)),
        )
        .map(|_| ())
        .map_err(|e| self.fail(e))
    }

    fn delete(&self, ids: &[u64]) -> Result<(), IndexError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = PointsIdsList {
            ids: ids.iter().map(|i| PointId::from(*i)).collect(),
        };
        block_on(
            self.client.delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(ids)
                    .wait(true),
            ),
        )
        .map(|_| ())
        .map_err(|e| self.fail(e))
    }

    fn search(
        &self,
        vector: &[f32],
        filter: &SearchFilter,
        limit: usize,
        exact: bool,
    ) -> Result<Vec<Hit>, IndexError> {
        super::check_dim(vector.len(), self.dim)?;
        let mut req = SearchPointsBuilder::new(&self.collection, vector.to_vec(), limit as u64)
            .with_payload(true)
            .params(
                SearchParamsBuilder::default()
                    .hnsw_ef(self.hnsw_ef.max(limit as u64))
                    .exact(exact),
            );
        if let Some(f) = filter_of(filter) {
            req = req.filter(f);
        }
        let found = block_on(self.client.search_points(req)).map_err(|e| self.fail(e))?;
        found
            .result
            .into_iter()
            .map(|p| {
                let id =
                    numeric_id(p.id).ok_or_else(|| self.fail("a point without a numeric id"))?;
                let json = serde_json::Value::from(Payload::from(p.payload));
                Hit::from_json(id, p.score, json).map_err(|e| self.fail(e))
            })
            .collect()
    }

    fn vectors(&self, ids: &[u64]) -> Result<Vec<(u64, Vec<f32>)>, IndexError> {
        let ids: Vec<PointId> = ids.iter().map(|i| PointId::from(*i)).collect();
        let got = block_on(
            self.client
                .get_points(GetPointsBuilder::new(&self.collection, ids).with_vectors(true)),
        )
        .map_err(|e| self.fail(e))?;
        Ok(got
            .result
            .into_iter()
            .filter_map(|p| {
                let id = numeric_id(p.id)?;
                match p.vectors?.get_vector()? {
                    OutVector::Dense(d) => Some((id, d.data)),
                    _ => None,
                }
            })
            .collect())
    }

    fn count(&self) -> Result<usize, IndexError> {
        let r = block_on(
            self.client
                .count(CountPointsBuilder::new(&self.collection).exact(true)),
        )
        .map_err(|e| self.fail(e))?;
        Ok(r.result.map_or(0, |c| c.count as usize))
    }

    fn flush(&self) -> Result<(), IndexError> {
        // Upserts and deletes wait for the server to apply them; durability is the server's.
        Ok(())
    }

    fn optimize(&self) -> Result<(), IndexError> {
        // The server builds its graph in the background.
        Ok(())
    }
}
