//! qdrant-edge in process: the embedded default index, one shard in a directory under the data dir.
//! Cosine distance over the review encoder's vectors; keyword/integer/float payload indexes on the
//! filter fields; HNSW built by [`VectorIndex::optimize`] after a bulk load.

use std::path::{Path, PathBuf};

use qdrant_edge::{
    Condition, CreateIndex, Distance, EdgeConfigBuilder, EdgeShard, EdgeVectorParamsBuilder,
    FieldCondition, FieldIndexOperations, Filter, JsonPath, Match, PayloadFieldSchema,
    PayloadSchemaType, PointId, PointInsertOperations, PointOperations, PointStruct,
    PointStructPersisted, QueryEnum, Range, SearchParams, SearchRequest, UpdateOperation,
    VectorInternal, VectorStructInternal, WithPayloadInterface, WithVector,
};

use super::{Hit, IndexError, ReviewPoint, SearchFilter, VectorIndex};

pub struct EdgeIndex {
    shard: EdgeShard,
    path: PathBuf,
    dim: usize,
    /// HNSW beam width at query time (recall vs speed; measured by the index bench).
    pub hnsw_ef: usize,
}

const FIELDS: [(&str, PayloadSchemaType); 5] = [
    ("product_id", PayloadSchemaType::Integer),
    ("customer_id", PayloadSchemaType::Integer),
    ("day", PayloadSchemaType::Integer),
    ("rating", PayloadSchemaType::Float),
    ("sentiment", PayloadSchemaType::Keyword),
];

impl EdgeIndex {
    /// Opens the index in `dir`, creating it (for `dim`-dimensional vectors) when the directory holds
    /// none. An existing index with another dimension is refused.
    pub fn open(dir: &Path, dim: usize) -> Result<Self, IndexError> {
        let fail = |reason: String| IndexError::Engine {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        let exists = dir.join("edge_config.json").exists();
        let shard = if exists {
            EdgeShard::load(dir, None).map_err(|e| fail(e.to_string()))?
        } else {
            let config = EdgeConfigBuilder::new()
                .vector(
                    "",
                    EdgeVectorParamsBuilder::new(dim, Distance::Cosine).build(),
                )
                .build();
            EdgeShard::new(dir, config).map_err(|e| fail(e.to_string()))?
        };
        let stored = shard.config().vectors.get("").map(|v| v.size);
        if let Some(d) = stored
            && d != dim
        {
            return Err(IndexError::Dimension { got: dim, want: d });
        }
        let index = Self {
            shard,
            path: dir.to_path_buf(),
            dim,
            hnsw_ef: 256,
        };
        if !exists {
            for (field, kind) in FIELDS {
                index.update(UpdateOperation::FieldIndexOperation(
                    FieldIndexOperations::CreateIndex(CreateIndex {
                        field_name: path(field),
                        field_schema: Some(PayloadFieldSchema::FieldType(kind)),
                    }),
                ))?;
            }
        }
        Ok(index)
    }

    /// Opens the index in `dir` with the dimension it was created with; `None` when there is none yet.
    /// (Readers that only search or count need no encoder to know the dimension.)
    pub fn open_existing(dir: &Path) -> Result<Option<Self>, IndexError> {
        if !dir.join("edge_config.json").exists() {
            return Ok(None);
        }
        let shard = EdgeShard::load(dir, None).map_err(|e| IndexError::Engine {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let dim = shard.config().vectors.get("").map_or(0, |v| v.size);
        Ok(Some(Self {
            shard,
            path: dir.to_path_buf(),
            dim,
            hnsw_ef: 256,
        }))
    }

    fn fail(&self, e: impl ToString) -> IndexError {
        IndexError::Engine {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }

    fn update(&self, op: UpdateOperation) -> Result<(), IndexError> {
        self.shard.update(op).map_err(|e| self.fail(e))
    }
}

/// A top-level payload key as a JSON path.
fn path(field: &str) -> JsonPath {
    field
        .parse()
        .unwrap_or_else(|_| unreachable!("{field} is a plain key"))
}

fn filter_of(f: &SearchFilter) -> Option<Filter> {
    let mut must = Vec::new();
    let field = |name: &str, m: Match| Condition::Field(FieldCondition::new_match(path(name), m));
    if let Some(ids) = &f.product_ids {
        must.push(field("product_id", Match::from(ids.clone())));
    }
    if let Some(s) = &f.sentiment {
        must.push(field("sentiment", Match::from(s.clone())));
    }
    if f.since.is_some() || f.until.is_some() {
        must.push(Condition::Field(FieldCondition::new_range(
            path("day"),
            Range {
                gte: f.since.map(|d| (super::day_number(d) as f64).into()),
                lte: f.until.map(|d| (super::day_number(d) as f64).into()),
                lt: None,
                gt: None,
            },
        )));
    }
    if f.min_rating.is_some() || f.max_rating.is_some() {
        must.push(Condition::Field(FieldCondition::new_range(
            path("rating"),
            Range {
                gte: f.min_rating.map(Into::into),
                lte: f.max_rating.map(Into::into),
                lt: None,
                gt: None,
            },
        )));
    }
    (!must.is_empty()).then(|| Filter {
        must: Some(must),
        ..Default::default()
    })
}

impl VectorIndex for EdgeIndex {
    fn upsert(&self, points: &[ReviewPoint]) -> Result<(), IndexError> {
        if points.is_empty() {
            return Ok(());
        }
        let mut list: Vec<PointStructPersisted> = Vec::with_capacity(points.len());
        for p in points {
            super::check_dim(p.vector.len(), self.dim)?;
            let payload = serde_json::to_value(&p.payload).map_err(|e| self.fail(e))?;
            list.push(PointStruct::new(p.id, p.vector.clone(), payload).into());
        }
        self.update(UpdateOperation::PointOperation(
            PointOperations::UpsertPoints(PointInsertOperations::PointsList(list)),
        ))
    }

    fn delete(&self, ids: &[u64]) -> Result<(), IndexError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.update(UpdateOperation::PointOperation(
            PointOperations::DeletePoints {
                ids: ids.iter().map(|i| PointId::NumId(*i)).collect(),
            },
        ))
    }

    fn search(
        &self,
        vector: &[f32],
        filter: &SearchFilter,
        limit: usize,
        exact: bool,
    ) -> Result<Vec<Hit>, IndexError> {
        super::check_dim(vector.len(), self.dim)?;
        let request = SearchRequest {
            query: QueryEnum::Nearest(qdrant_edge::NamedQuery {
                query: VectorInternal::Dense(vector.to_vec()),
                using: None,
            }),
            filter: filter_of(filter),
            params: Some(SearchParams {
                hnsw_ef: Some(self.hnsw_ef.max(limit)),
                exact,
                ..Default::default()
            }),
            limit,
            offset: 0,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: Some(WithVector::Bool(false)),
            score_threshold: None,
        };
        let found = self.shard.search(request).map_err(|e| self.fail(e))?;
        found
            .into_iter()
            .map(|p| {
                let id = match p.id {
                    PointId::NumId(n) => n,
                    PointId::Uuid(u) => return Err(self.fail(format!("unexpected uuid id {u}"))),
                };
                let payload = p
                    .payload
                    .map(|pl| serde_json::Value::Object(pl.0.into_iter().collect()))
                    .unwrap_or(serde_json::Value::Null);
                Hit::from_json(id, p.score, payload).map_err(|e| self.fail(e))
            })
            .collect()
    }

    fn vectors(&self, ids: &[u64]) -> Result<Vec<(u64, Vec<f32>)>, IndexError> {
        let ids: Vec<PointId> = ids.iter().map(|i| PointId::NumId(*i)).collect();
        let records = self
            .shard
            .retrieve(
                &ids,
                Some(WithPayloadInterface::Bool(false)),
                Some(WithVector::Bool(true)),
            )
            .map_err(|e| self.fail(e))?;
        Ok(records
            .into_iter()
            .filter_map(|r| {
                let PointId::NumId(id) = r.id else {
                    return None;
                };
                match r.vector? {
                    VectorStructInternal::Single(v) => Some((id, v)),
                    VectorStructInternal::Named(mut m) => match m.remove("")? {
                        VectorInternal::Dense(v) => Some((id, v)),
                        _ => None,
                    },
                    VectorStructInternal::MultiDense(_) => None,
                }
            })
            .collect())
    }

    fn count(&self) -> Result<usize, IndexError> {
        Ok(self.shard.info().points_count)
    }

    fn flush(&self) -> Result<(), IndexError> {
        self.shard.flush();
        Ok(())
    }

    fn optimize(&self) -> Result<(), IndexError> {
        self.shard.optimize().map(|_| ()).map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ReviewPayload;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim as u64)
            .map(|i| {
                (xxhash_rust::xxh3::xxh3_64_with_seed(&i.to_le_bytes(), seed) >> 40) as f32
                    / (1u64 << 24) as f32
                    - 0.5
            })
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    fn point(id: u64, product: i64, day: i64, sentiment: &str) -> ReviewPoint {
        ReviewPoint {
            id,
            vector: unit(id, 16),
            payload: ReviewPayload {
                customer_id: id as i64 % 7,
                product_id: Some(product),
                day: Some(day),
                rating: Some((id % 5 + 1) as f64),
                sentiment: Some(sentiment.into()),
            },
        }
    }

    #[test]
    fn finds_itself_filters_by_payload_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let points: Vec<ReviewPoint> = (1..=300)
            .map(|i| {
                let s = if i % 3 == 0 { "negative" } else { "positive" };
                point(i, (i % 4) as i64, 20_000 + i as i64, s)
            })
            .collect();
        let before;
        {
            let index = EdgeIndex::open(dir.path(), 16).unwrap();
            index.upsert(&points).unwrap();
            index.flush().unwrap();
            assert_eq!(index.count().unwrap(), 300);
            let hits = index
                .search(&points[41].vector, &SearchFilter::default(), 5, false)
                .unwrap();
            assert_eq!(hits[0].id, 42);
            assert!((hits[0].score - 1.0).abs() < 1e-5);
            assert_eq!(hits[0].payload, points[41].payload);
            let got = index.vectors(&[42, 7, 9999]).unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].0, 42);
            let c: f32 = got[0]
                .1
                .iter()
                .zip(&points[41].vector)
                .map(|(a, b)| a * b)
                .sum();
            assert!((c - 1.0).abs() < 1e-5);
            let f = SearchFilter {
                sentiment: Some("negative".into()),
                product_ids: Some(vec![1, 2]),
                since: chrono::NaiveDate::from_num_days_from_ce_opt(719_163 + 20_100),
                ..Default::default()
            };
            before = index.search(&points[41].vector, &f, 10, false).unwrap();
            assert!(!before.is_empty());
            for h in &before {
                assert_eq!(h.payload.sentiment.as_deref(), Some("negative"));
                assert!(matches!(h.payload.product_id, Some(1 | 2)));
                assert!(h.payload.day.unwrap() >= 20_100);
            }
            index.delete(&[42]).unwrap();
            index.flush().unwrap();
        }
        let index = EdgeIndex::open(dir.path(), 16).unwrap();
        assert_eq!(index.count().unwrap(), 299);

        let f = SearchFilter {
            sentiment: Some("negative".into()),
            product_ids: Some(vec![1, 2]),
            since: chrono::NaiveDate::from_num_days_from_ce_opt(719_163 + 20_100),
            ..Default::default()
        };
        assert_eq!(
            index.search(&points[41].vector, &f, 10, false).unwrap(),
            before
        );
        drop(index);
        let existing = EdgeIndex::open_existing(dir.path()).unwrap().unwrap();
        assert_eq!((existing.dim, existing.count().unwrap()), (16, 299));
        drop(existing);
        assert!(
            EdgeIndex::open_existing(&dir.path().join("none"))
                .unwrap()
                .is_none()
        );
        let other = EdgeIndex::open(dir.path(), 8).map(|_| ());
        assert!(
            matches!(other, Err(IndexError::Dimension { got: 8, want: 16 })),
            "{other:?}"
        );
    }
}
