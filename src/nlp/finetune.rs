//! Fine-tuning the encoder's top layers for a task (sentiment), on a CPU.
//!
//! The bottom layers stay frozen: their token states are computed once by the fast engine
//! ([`super::int8::Int8Bert::states`]) and kept, so an epoch costs only the trainable top. The top
//! layers start as copies of the encoder's own and are trained with candle's autograd together with a
//! linear classifier over the mean-pooled, unit-length output (what the encoder's sentence vectors
//! are). Layer norm is written out in differentiable operations (candle-nn's fused op has no
//! backward). Batches group texts of similar length (little padding), their order is seeded, and the
//! weights of the epoch that scored best on the validation texts are kept.
//!
//! The trained layers are exported under BERT's names (`{i}.attention.self.query.weight`, …) for
//! [`super::int8::Branch`], which runs them in the same engine as the rest of the encoder; a test pins
//! the two forward passes to each other.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

#[derive(Debug, thiserror::Error)]
pub enum FineTuneError {
    #[error("fine-tuning: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("fine-tuning: tensor {0} missing from the encoder")]
    Missing(String),
    #[error("fine-tuning: {0}")]
    Data(&'static str),
}

/// The trainable layers' shape.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub hidden: usize,
    pub heads: usize,
    pub eps: f64,
}

#[derive(Debug, Clone)]
pub struct FineTuneOptions {
    /// How many of the encoder's top layers are trained.
    pub layers: usize,
    pub epochs: usize,
    /// Texts per step.
    pub batch: usize,
    /// AdamW learning rate of the encoder layers.
    pub learning_rate: f64,
    /// AdamW learning rate of the classifier.
    pub head_learning_rate: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Padded attention scores one training pass may hold, in texts × length² (see
    /// [`TRAIN_BUDGET`]); a batch over it is run in parts and their gradients summed.
    pub part_budget: usize,
    /// Low-rank adapters (LoRA) of this rank on every linear map of the tuned layers, whose own
    /// weights then stay frozen; 0: the layers' weights train themselves. With `layers` = all of the
    /// encoder's, the adapters tune every layer from the embeddings up.
    pub rank: usize,
}

impl Default for FineTuneOptions {
    fn default() -> Self {
        Self {
            // Measured on the full corpus (2 cores): four layers for one epoch beat two for three on
            // every held-out set, in 26 minutes instead of 40.
            layers: 4,
            epochs: 1,
            batch: 32,
            learning_rate: 5e-5,
            head_learning_rate: 2e-3,
            weight_decay: 1e-2,
            seed: 618,
            part_budget: TRAIN_BUDGET,
            rank: 0,
        }
    }
}

/// The classifier reads the unit-length sentence vector times this (cosine logits need a scale to
/// reach confident probabilities).
const LOGIT_SCALE: f64 = 20.0;

/// Parameter names of one layer, as BERT names them (the `encoder.layer.{l}.` part left off).
pub const LAYER_PARAMS: [&str; 16] = [
    "attention.self.query.weight",
    "attention.self.query.bias",
    "attention.self.key.weight",
    "attention.self.key.bias",
    "attention.self.value.weight",
    "attention.self.value.bias",
    "attention.output.dense.weight",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.weight",
    "intermediate.dense.bias",
    "output.dense.weight",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
];

/// One trainable layer: its parameters in [`LAYER_PARAMS`] order, and low-rank adapters when the
/// weights themselves stay frozen.
struct TrainLayer {
    p: Vec<Var>,
    adapters: Vec<Adapter>,
}

/// A low-rank update of one weight: W + [`ADAPTER_SCALE`] · B·A, with A (rank × in) and B (out ×
/// rank); B starts at zero, so training starts from the pre-trained layer.
struct Adapter {
    /// Which weight, as an index into [`LAYER_PARAMS`].
    param: usize,
    a: Var,
    b: Var,
}

/// The weights adapters update: query, key, value, attention output, intermediate and output dense.
const ADAPTED: [usize; 6] = [0, 2, 4, 6, 10, 12];

/// LoRA's alpha / rank, with alpha = 2 × rank.
const ADAPTER_SCALE: f64 = 2.0;

/// Trainable top layers and their classifier.
pub struct Top {
    shape: Shape,
    layers: Vec<TrainLayer>,
    cls_w: Var,
    cls_b: Var,
}

/// Mean and variance over the last dimension, written in operations that have a backward pass.
fn layer_norm(x: &Tensor, g: &Tensor, b: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xn = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    xn.broadcast_mul(g)?.broadcast_add(b)
}

/// softmax(scale · scores + mask bias) over the last dimension in one pass, with a backward pass:
/// `scores` (batch, heads, len, len), the bias (batch, 1, 1, len). Written out in candle's operations
/// (scale, add, max, subtract, exp, sum, divide) a recorded pass keeps six tensors of the attention's
/// size a layer until the backward pass is done, and they were most of the training's peak memory (a
/// full run rose from 1.8 GB to 10.7 GB on its longest batches); fused, it keeps its result alone (the
/// scores are the matmul's): `train sentiment --validate --limit 2000` peaked at 5.0 GB instead of
/// 8.0, its epoch 160 s instead of 167. candle's own fused softmax has no backward.
struct AttentionSoftmax {
    scale: f32,
}

impl candle_core::CustomOp2 for AttentionSoftmax {
    fn name(&self) -> &'static str {
        "attention-softmax"
    }

    fn cpu_fwd(
        &self,
        scores: &candle_core::CpuStorage,
        scores_layout: &candle_core::Layout,
        bias: &candle_core::CpuStorage,
        bias_layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::CpuStorage;
        use rayon::prelude::*;
        let (CpuStorage::F32(s), CpuStorage::F32(bias)) = (scores, bias) else {
            candle_core::bail!("attention-softmax: f32 only");
        };
        let (Some((s0, s1)), Some((b0, b1))) = (
            scores_layout.contiguous_offsets(),
            bias_layout.contiguous_offsets(),
        ) else {
            candle_core::bail!("attention-softmax: contiguous inputs only");
        };
        let (s, bias) = (&s[s0..s1], &bias[b0..b1]);
        let &[b, heads, rows, t] = scores_layout.dims() else {
            candle_core::bail!("attention-softmax: scores are (batch, heads, len, len)");
        };
        if bias.len() != b * t {
            candle_core::bail!("attention-softmax: the bias is (batch, 1, 1, len)");
        }
        let per_text = heads * rows;
        let mut out = vec![0f32; s.len()];
        out.par_chunks_mut(t)
            .zip(s.par_chunks(t))
            .enumerate()
            .for_each(|(r, (o, x))| {
                let bb = &bias[(r / per_text) * t..][..t];
                let mut max = f32::NEG_INFINITY;
                for ((o, x), bb) in o.iter_mut().zip(x).zip(bb) {
                    *o = x * self.scale + bb;
                    max = max.max(*o);
                }
                let mut sum = 0f32;
                for o in o.iter_mut() {
                    *o = (*o - max).exp();
                    sum += *o;
                }
                for o in o.iter_mut() {
                    *o /= sum;
                }
            });
        Ok((
            CpuStorage::F32(out),
            candle_core::Shape::from_dims(scores_layout.dims()),
        ))
    }

    /// d scores = scale · p ⊙ (g − Σ g ⊙ p); the bias is a constant mask.
    fn bwd(
        &self,
        _scores: &Tensor,
        _bias: &Tensor,
        p: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let gp = (g * p)?;
        let sum = gp.sum_keepdim(D::Minus1)?;
        let grad = (gp - p.broadcast_mul(&sum)?)?.affine(f64::from(self.scale), 0.0)?;
        Ok((Some(grad), None))
    }
}

fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    x.matmul(&w.t()?)?.broadcast_add(b)
}

/// Padded attention scores a pass may hold at once, in batch × length² (each is 12 heads × 4
/// bytes): a batch of 32 texts of 512 tokens holds 400 MB per attention tensor and autograd keeps
/// several per layer, which ran a 2-core, 24 GB machine out of memory with four tuned layers. A batch
/// over the budget is run in parts whose gradients are summed (the same step); at most 8 texts of
/// 512 tokens, 32 of 256, go through at once.
const SCORE_BUDGET: usize = 32 * 256 * 256;

/// What one recorded training pass may hold, in the same units: a quarter of [`SCORE_BUDGET`] (8 texts
/// of 256 tokens, 2 of 512). A recorded pass keeps its intermediate tensors until the backward pass is
/// done, so the longest batches set the training's peak memory; measured with `train sentiment
/// --validate --limit 2000` on 2 cores: peak 5.0 GB at the scoring budget, 3.1 GB at a quarter, the
/// epoch 160 s and 165 s.
const TRAIN_BUDGET: usize = SCORE_BUDGET / 4;

/// `idx` (texts of similar length) cut into consecutive parts of at most `budget` texts × length².
fn parts<'a, T>(idx: &'a [usize], states: &[&[T]], h: usize, budget: usize) -> Vec<&'a [usize]> {
    let mut out = Vec::new();
    let (mut start, mut longest) = (0, 0);
    for (j, i) in idx.iter().enumerate() {
        let t = (states[*i].len() / h).max(1);
        let l = longest.max(t);
        if j > start && (j + 1 - start) * l * l > budget {
            out.push(&idx[start..j]);
            start = j;
            longest = t;
        } else {
            longest = l;
        }
    }
    if start < idx.len() {
        out.push(&idx[start..]);
    }
    out
}

impl TrainLayer {
    /// The parameters as tensors: the variables themselves (autograd records a pass over them) or,
    /// without `record`, detached views (nothing recorded: what scoring and vectors need — a
    /// recorded pass keeps every intermediate tensor alive until its result is dropped). An adapted
    /// weight is the frozen weight plus its adapter's update (recorded through the adapter only).
    fn params(&self, record: bool) -> candle_core::Result<Vec<Tensor>> {
        let frozen = !self.adapters.is_empty();
        let mut p: Vec<Tensor> = self
            .p
            .iter()
            .map(|v| {
                if record && !frozen {
                    v.as_tensor().clone()
                } else {
                    v.as_tensor().detach()
                }
            })
            .collect();
        for ad in &self.adapters {
            let (a, b) = if record {
                (ad.a.as_tensor().clone(), ad.b.as_tensor().clone())
            } else {
                (ad.a.as_tensor().detach(), ad.b.as_tensor().detach())
            };
            p[ad.param] = (&p[ad.param] + b.matmul(&a)?.affine(ADAPTER_SCALE, 0.0)?)?;
        }
        Ok(p)
    }

    /// `p`: [`TrainLayer::params`]; `x`: (batch × len, hidden) token states; `bias`: (batch, 1, 1,
    /// len) with 0 for real tokens and a large negative number for padding.
    fn forward(
        p: &[Tensor],
        x: &Tensor,
        (b, t): (usize, usize),
        bias: &Tensor,
        s: Shape,
    ) -> candle_core::Result<Tensor> {
        let dh = s.hidden / s.heads;
        let split = |y: Tensor| -> candle_core::Result<Tensor> {
            y.reshape((b, t, s.heads, dh))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(linear(x, &p[0], &p[1])?)?;
        let k = split(linear(x, &p[2], &p[3])?)?;
        let v = split(linear(x, &p[4], &p[5])?)?;
        let probs = q.matmul(&k.t()?.contiguous()?)?.apply_op2(
            bias,
            AttentionSoftmax {
                scale: 1.0 / (dh as f32).sqrt(),
            },
        )?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * t, s.hidden))?;
        let x = layer_norm(&(x + linear(&ctx, &p[6], &p[7])?)?, &p[8], &p[9], s.eps)?;
        let f = linear(&x, &p[10], &p[11])?.gelu_erf()?;
        layer_norm(&(&x + linear(&f, &p[12], &p[13])?)?, &p[14], &p[15], s.eps)
    }
}

/// A batch of token states padded to its longest text.
struct Batch {
    x: Tensor,
    bias: Tensor,
    mask: Tensor,
    b: usize,
    t: usize,
}

/// A token state's number: f32, or f16 as the training set keeps them (half the memory).
pub trait StateValue: Copy + Send + Sync {
    fn widen(dst: &mut [f32], src: &[Self]);
}

impl StateValue for f32 {
    fn widen(dst: &mut [f32], src: &[f32]) {
        dst.copy_from_slice(src);
    }
}

impl StateValue for half::f16 {
    fn widen(dst: &mut [f32], src: &[half::f16]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(dst);
    }
}

/// `states` as kept for training: each value rounded to f16.
pub fn narrow(states: &[f32]) -> Vec<half::f16> {
    use half::slice::HalfFloatSliceExt;
    let mut out = vec![half::f16::ZERO; states.len()];
    out.convert_from_f32_slice(states);
    out
}

fn batch<T: StateValue>(states: &[&[T]], h: usize, device: &Device) -> candle_core::Result<Batch> {
    let b = states.len();
    let t = states.iter().map(|s| s.len() / h).max().unwrap_or(1).max(1);
    let mut x = vec![0f32; b * t * h];
    let mut mask = vec![0f32; b * t];
    for (i, s) in states.iter().enumerate() {
        T::widen(&mut x[i * t * h..i * t * h + s.len()], s);
        mask[i * t..i * t + s.len() / h].fill(1.0);
    }
    let bias: Vec<f32> = mask.iter().map(|m| (1.0 - m) * -1e4).collect();
    Ok(Batch {
        x: Tensor::from_vec(x, (b * t, h), device)?,
        bias: Tensor::from_vec(bias, (b, 1, 1, t), device)?,
        mask: Tensor::from_vec(mask, (b, t, 1), device)?,
        b,
        t,
    })
}

impl Top {
    /// The encoder's layers `start..start + count` (named `encoder.layer.{l}.…`) as the starting point,
    /// and a zero classifier.
    pub fn from_encoder(
        tensors: &HashMap<String, Tensor>,
        start: usize,
        count: usize,
        shape: Shape,
    ) -> Result<Self, FineTuneError> {
        let device = Device::Cpu;
        let mut layers = Vec::with_capacity(count);
        for l in start..start + count {
            let mut p = Vec::with_capacity(LAYER_PARAMS.len());
            for name in LAYER_PARAMS {
                let full = format!("encoder.layer.{l}.{name}");
                let t = tensors
                    .get(&full)
                    .or_else(|| tensors.get(&format!("bert.{full}")))
                    .ok_or_else(|| FineTuneError::Missing(full.clone()))?;
                p.push(Var::from_tensor(
                    &t.to_dtype(DType::F32)?.to_device(&device)?,
                )?);
            }
            layers.push(TrainLayer {
                p,
                adapters: Vec::new(),
            });
        }
        Ok(Self {
            shape,
            layers,
            cls_w: Var::zeros((2, shape.hidden), DType::F32, &device)?,
            cls_b: Var::zeros(2, DType::F32, &device)?,
        })
    }

    /// Unit-length mean-pooled sentence vectors of a batch: (batch, hidden); `record` for a pass
    /// autograd will go back through.
    fn pooled(&self, bt: &Batch, record: bool) -> candle_core::Result<Tensor> {
        let mut x = bt.x.clone();
        for layer in &self.layers {
            x = TrainLayer::forward(
                &layer.params(record)?,
                &x,
                (bt.b, bt.t),
                &bt.bias,
                self.shape,
            )?;
        }
        let x = x.reshape((bt.b, bt.t, self.shape.hidden))?;
        let summed = x.broadcast_mul(&bt.mask)?.sum(1)?;
        let counts = bt.mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        mean.broadcast_div(&norm)
    }

    fn logits(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        linear(
            &pooled.affine(LOGIT_SCALE, 0.0)?,
            self.cls_w.as_tensor(),
            self.cls_b.as_tensor(),
        )
    }

    /// Sentence vectors for token states (the training-time forward pass), `batch` texts at a time.
    pub fn vectors<T: StateValue>(
        &self,
        states: &[&[T]],
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>, FineTuneError> {
        let all: Vec<usize> = (0..states.len()).collect();
        let mut out = Vec::with_capacity(states.len());
        for chunk in all.chunks(batch_size.max(1)) {
            out.extend(self.pooled_parts(states, chunk)?.to_vec2::<f32>()?);
        }
        Ok(out)
    }

    /// [`Top::pooled`] of `states[idx]`, unrecorded, run in parts within [`SCORE_BUDGET`].
    fn pooled_parts<T: StateValue>(
        &self,
        states: &[&[T]],
        idx: &[usize],
    ) -> candle_core::Result<Tensor> {
        let h = self.shape.hidden;
        let pooled = parts(idx, states, h, SCORE_BUDGET)
            .into_iter()
            .map(|part| {
                let s: Vec<&[T]> = part.iter().map(|i| states[*i]).collect();
                self.pooled(&batch(&s, h, &Device::Cpu)?, false)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&pooled, 0)
    }

    /// Freezes the layers' weights and gives every linear map of each a low-rank adapter of `rank`
    /// (A seeded uniform in ±1/√in, B zero: the layers start as they were).
    pub fn with_adapters(mut self, rank: usize, seed: u64) -> Result<Self, FineTuneError> {
        if rank == 0 {
            return Ok(self);
        }
        for (l, layer) in self.layers.iter_mut().enumerate() {
            for &param in &ADAPTED {
                let (out, inp) = layer.p[param].as_tensor().dims2()?;
                let bound = 1.0 / (inp as f64).sqrt();
                let key = seed ^ ((l as u64) << 32) ^ param as u64;
                let a: Vec<f32> = (0..rank * inp)
                    .map(|i| {
                        let u =
                            xxhash_rust::xxh3::xxh3_64_with_seed(&(i as u64).to_le_bytes(), key);
                        ((u as f64 / u64::MAX as f64 * 2.0 - 1.0) * bound) as f32
                    })
                    .collect();
                layer.adapters.push(Adapter {
                    param,
                    a: Var::from_tensor(&Tensor::from_vec(a, (rank, inp), &Device::Cpu)?)?,
                    b: Var::zeros((out, rank), DType::F32, &Device::Cpu)?,
                });
            }
        }
        Ok(self)
    }

    /// The trained layers under BERT's names, prefixed `{prefix}{i}.` (layer `i` of the branch);
    /// adapted weights with their updates merged in (the engine runs them as any tuned layer).
    pub fn export(&self, prefix: &str) -> Result<HashMap<String, Tensor>, FineTuneError> {
        let mut out = HashMap::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (name, t) in LAYER_PARAMS.iter().zip(layer.params(false)?) {
                out.insert(format!("{prefix}{i}.{name}"), t.copy()?);
            }
        }
        Ok(out)
    }

    /// What the optimiser trains: the adapters where there are some, else the layers' weights.
    fn vars(&self) -> Vec<Var> {
        self.layers
            .iter()
            .flat_map(|l| {
                if l.adapters.is_empty() {
                    l.p.clone()
                } else {
                    l.adapters
                        .iter()
                        .flat_map(|a| [a.a.clone(), a.b.clone()])
                        .collect()
                }
            })
            .collect()
    }

    /// Values the optimiser trains (adapters, or the layers' weights).
    pub fn trained_values(&self) -> usize {
        self.vars().iter().map(|v| v.as_tensor().elem_count()).sum()
    }

    fn snapshot(&self) -> candle_core::Result<Vec<Tensor>> {
        self.vars()
            .iter()
            .chain([&self.cls_w, &self.cls_b])
            .map(|v| v.as_tensor().copy())
            .collect()
    }

    fn restore(&self, weights: &[Tensor]) -> candle_core::Result<()> {
        for (v, w) in self
            .vars()
            .iter()
            .chain([&self.cls_w, &self.cls_b])
            .zip(weights)
        {
            v.set(w)?;
        }
        Ok(())
    }

    /// Accuracy of the classifier on labelled token states.
    pub fn accuracy<T: StateValue>(
        &self,
        states: &[&[T]],
        positive: &[bool],
    ) -> Result<f64, FineTuneError> {
        let order = by_length(states, self.shape.hidden);
        let mut right = 0usize;
        for chunk in order.chunks(64) {
            let l = self
                .logits(&self.pooled_parts(states, chunk)?)?
                .to_vec2::<f32>()?;
            right += chunk
                .iter()
                .zip(&l)
                .filter(|(i, l)| (l[1] > l[0]) == positive[**i])
                .count();
        }
        Ok(right as f64 / positive.len().max(1) as f64)
    }
}

/// A hash of tensors' names and values (what a stored label's version names).
pub fn fingerprint(tensors: &HashMap<String, Tensor>) -> Result<u64, FineTuneError> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut h = 0u64;
    for name in names {
        let v = tensors[name].flatten_all()?.to_vec1::<f32>()?;
        let bytes: Vec<u8> = name
            .bytes()
            .chain(v.iter().flat_map(|x| x.to_le_bytes()))
            .collect();
        h = xxhash_rust::xxh3::xxh3_64_with_seed(&bytes, h);
    }
    Ok(h)
}

/// Indices of `states` shortest first (ties by index).
fn by_length<T>(states: &[&[T]], h: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..states.len()).collect();
    order.sort_by_key(|i| (states[*i].len() / h, *i));
    order
}

/// One finished epoch.
#[derive(Debug, Clone, Copy)]
pub struct FtEpoch {
    pub epoch: usize,
    pub epochs: usize,
    pub loss: f32,
    pub val_accuracy: f64,
    pub seconds: f64,
}

/// One batch's mean loss and its gradients, part by part within `opts.part_budget`: each part's mean
/// weighted by its share of the batch, the gradients summed (one part: the plain step).
fn batch_grads<T: StateValue>(
    top: &Top,
    vars: &[Var],
    states: &[&[T]],
    idx: &[usize],
    labels: &dyn Fn(&[usize]) -> candle_core::Result<Tensor>,
    opts: &FineTuneOptions,
) -> Result<(f32, candle_core::backprop::GradStore), FineTuneError> {
    let h = top.shape.hidden;
    let mut loss_sum = 0f32;
    let mut grads: Option<candle_core::backprop::GradStore> = None;
    for part in parts(idx, states, h, opts.part_budget) {
        let s: Vec<&[T]> = part.iter().map(|i| states[*i]).collect();
        let bt = batch(&s, h, &Device::Cpu)?;
        let mut loss =
            candle_nn::loss::cross_entropy(&top.logits(&top.pooled(&bt, true)?)?, &labels(part)?)?;
        if part.len() < idx.len() {
            loss = loss.affine(part.len() as f64 / idx.len() as f64, 0.0)?;
        }
        loss_sum += loss.to_scalar::<f32>()?;
        let g = loss.backward()?;
        let Some(mut sum) = grads.take() else {
            grads = Some(g);
            continue;
        };
        for v in vars {
            if let Some(x) = g.get(v.as_tensor()) {
                let total = match sum.get(v.as_tensor()) {
                    Some(a) => (a + x)?,
                    None => x.clone(),
                };
                sum.insert(v.as_tensor(), total);
            }
        }
        grads = Some(sum);
    }
    Ok((
        loss_sum,
        grads.ok_or(FineTuneError::Data("an empty batch"))?,
    ))
}

/// What training did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FineTuneRun {
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub val_accuracy_before: f64,
    pub best_val_accuracy: f64,
    pub seconds_per_epoch: Vec<f64>,
}

/// Trains `top` on token states labelled positive (true) or negative; keeps the epoch that scored best
/// on the validation states, stopping after two epochs without improvement. Batch `i`'s steps happen in
/// a seeded order, so the same data and options give the same weights on the same machine.
pub fn train<T: StateValue>(
    top: &Top,
    (states, positive): (&[&[T]], &[bool]),
    (val_states, val_positive): (&[&[T]], &[bool]),
    opts: &FineTuneOptions,
    on_epoch: &mut dyn FnMut(FtEpoch),
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<FineTuneRun, FineTuneError> {
    if states.len() < 2 || val_states.is_empty() {
        return Err(FineTuneError::Data(
            "fine-tuning needs training and validation texts",
        ));
    }
    let h = top.shape.hidden;
    let device = Device::Cpu;
    // The classifier first learns on the frozen top for one pass of the data (so the layers do not
    // chase a random classifier), then everything trains.
    let mut layers_opt = AdamW::new(
        top.vars(),
        ParamsAdamW {
            lr: opts.learning_rate,
            weight_decay: opts.weight_decay,
            ..Default::default()
        },
    )?;
    let mut head_opt = AdamW::new(
        vec![top.cls_w.clone(), top.cls_b.clone()],
        ParamsAdamW {
            lr: opts.head_learning_rate,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let order = by_length(states, h);
    let batches: Vec<&[usize]> = order.chunks(opts.batch.max(1)).collect();
    let vars: Vec<Var> = top
        .vars()
        .into_iter()
        .chain([top.cls_w.clone(), top.cls_b.clone()])
        .collect();
    let labels = |idx: &[usize]| -> candle_core::Result<Tensor> {
        Tensor::from_vec(
            idx.iter()
                .map(|i| u32::from(positive[*i]))
                .collect::<Vec<_>>(),
            idx.len(),
            &device,
        )
    };
    // Warm-up of the classifier on frozen layers: pooled vectors computed once.
    {
        let pooled: Vec<(Tensor, Tensor)> = batches
            .iter()
            .map(|idx| Ok((top.pooled_parts(states, idx)?, labels(idx)?)))
            .collect::<candle_core::Result<_>>()?;
        for round in 0..3u64 {
            let mut seq: Vec<usize> = (0..pooled.len()).collect();
            seq.sort_by_key(|i| {
                xxhash_rust::xxh3::xxh3_64_with_seed(&(*i as u64).to_le_bytes(), opts.seed ^ round)
            });
            for i in seq {
                let (x, y) = &pooled[i];
                let loss = candle_nn::loss::cross_entropy(&top.logits(x)?, y)?;
                head_opt.backward_step(&loss)?;
            }
        }
    }
    let val_accuracy_before = top.accuracy(val_states, val_positive)?;
    let mut best = (val_accuracy_before, 0usize, top.snapshot()?);
    let mut seconds_per_epoch = Vec::new();
    let mut epochs_run = 0;
    for epoch in 0..opts.epochs {
        let started = std::time::Instant::now();
        let mut seq: Vec<usize> = (0..batches.len()).collect();
        seq.sort_by_key(|i| {
            xxhash_rust::xxh3::xxh3_64_with_seed(
                &(*i as u64).to_le_bytes(),
                opts.seed.wrapping_add(1 + epoch as u64),
            )
        });
        let (mut loss_sum, mut steps) = (0f32, 0usize);
        for (n, i) in seq.iter().enumerate() {
            // Linear warm-up over the first tenth of all steps, then linear decay to zero: a full
            // rate from the first step pulled the tuned layers away from the pre-trained ones (the
            // first epoch's validation accuracy fell below the frozen layers').
            let step = epoch * batches.len() + n;
            let total = opts.epochs * batches.len();
            let warm = (total / 10).max(1);
            let scale = if step < warm {
                (step + 1) as f64 / warm as f64
            } else {
                (total - step) as f64 / (total - warm).max(1) as f64
            };
            layers_opt.set_learning_rate(opts.learning_rate * scale);
            head_opt.set_learning_rate(opts.head_learning_rate * scale);
            let (loss, grads) = batch_grads(top, &vars, states, batches[*i], &labels, opts)?;
            loss_sum += loss;
            layers_opt.step(&grads)?;
            head_opt.step(&grads)?;
            steps += 1;
            on_step(n + 1, batches.len());
        }
        let val_accuracy = top.accuracy(val_states, val_positive)?;
        let seconds = started.elapsed().as_secs_f64();
        seconds_per_epoch.push(seconds);
        epochs_run = epoch + 1;
        on_epoch(FtEpoch {
            epoch: epoch + 1,
            epochs: opts.epochs,
            loss: loss_sum / steps.max(1) as f32,
            val_accuracy,
            seconds,
        });
        if val_accuracy > best.0 {
            best = (val_accuracy, epoch + 1, top.snapshot()?);
        } else if epoch + 1 >= best.1 + 2 {
            break;
        }
    }
    top.restore(&best.2)?;
    Ok(FineTuneRun {
        epochs_run,
        best_epoch: best.1,
        val_accuracy_before,
        best_val_accuracy: best.0,
        seconds_per_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_batches_are_cut_into_parts_within_the_budget_in_order() {
        let h = 2;
        let lens = [
            512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 100, 100, 100,
        ];
        let states: Vec<Vec<f32>> = lens.iter().map(|l| vec![0.0; l * h]).collect();
        let s: Vec<&[f32]> = states.iter().map(Vec::as_slice).collect();
        let idx: Vec<usize> = (0..lens.len()).collect();
        let p = parts(&idx, &s, h, SCORE_BUDGET);
        let sizes: Vec<usize> = p.iter().map(|p| p.len()).collect();
        // 8 texts of 512 tokens fill the budget; the rest (two of 512, then short ones padded to
        // 512) make the second part.
        assert_eq!(sizes, [8, 5]);
        assert_eq!(p.concat(), idx);
        let short: Vec<usize> = (10..13).collect();
        assert_eq!(parts(&short, &s, h, SCORE_BUDGET), [&short[..]]);
        // A text over the budget on its own still goes through, alone.
        assert_eq!(parts(&idx[..2], &s, h, 1000), [&idx[..1], &idx[1..2]]);
    }

    /// A one-layer encoder of width 8 (2 heads) with seeded weights, and eight texts' token states.
    fn toy_layer() -> (HashMap<String, Tensor>, Shape, Vec<Vec<f32>>) {
        let shape = Shape {
            hidden: 8,
            heads: 2,
            eps: 1e-12,
        };
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.4
        };
        let dims: [&[usize]; 16] = [
            &[8, 8],
            &[8],
            &[8, 8],
            &[8],
            &[8, 8],
            &[8],
            &[8, 8],
            &[8],
            &[8],
            &[8],
            &[16, 8],
            &[16],
            &[8, 16],
            &[8],
            &[8],
            &[8],
        ];
        let mut tensors = HashMap::new();
        for (name, d) in LAYER_PARAMS.iter().zip(dims) {
            let n: usize = d.iter().product();
            let v: Vec<f32> = if name.ends_with("LayerNorm.weight") {
                vec![1.0; n]
            } else {
                (0..n).map(|_| next()).collect()
            };
            tensors.insert(
                format!("encoder.layer.0.{name}"),
                Tensor::from_vec(v, d.to_vec(), &Device::Cpu).unwrap(),
            );
        }
        let lens = [30, 31, 33, 35, 40, 41, 45, 50];
        let states: Vec<Vec<f32>> = lens
            .iter()
            .map(|l| (0..l * 8).map(|_| next() * 5.0).collect())
            .collect();
        (tensors, shape, states)
    }

    /// The fused attention softmax gives what candle's operations written out give, forward and
    /// backward (padding masked, rows of several texts and heads).
    #[test]
    fn fused_attention_softmax_matches_the_written_out_one_and_its_gradient() {
        let (b, heads, t) = (3, 2, 5);
        let scores: Vec<f32> = (0..b * heads * t * t)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.3)
            .collect();
        let mut bias = vec![0f32; b * t];
        bias[t - 1] = -1e4;
        bias[2 * t - 2..2 * t].fill(-1e4);
        let weights: Vec<f32> = (0..b * heads * t * t)
            .map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.5)
            .collect();
        let dev = Device::Cpu;
        let x = Var::from_vec(scores, (b, heads, t, t), &dev).unwrap();
        let bias = Tensor::from_vec(bias, (b, 1, 1, t), &dev).unwrap();
        let w = Tensor::from_vec(weights, (b, heads, t, t), &dev).unwrap();
        let scale = 0.125f32;
        let fused = x
            .as_tensor()
            .apply_op2(&bias, AttentionSoftmax { scale })
            .unwrap();
        let written = candle_nn::ops::softmax(
            &x.as_tensor()
                .affine(f64::from(scale), 0.0)
                .unwrap()
                .broadcast_add(&bias)
                .unwrap(),
            D::Minus1,
        )
        .unwrap();
        let max_diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(max_diff(&fused, &written) < 1e-6);
        // A masked position gets nothing.
        let row = fused.get(0).unwrap().get(1).unwrap().get(2).unwrap();
        assert_eq!(row.to_vec1::<f32>().unwrap()[t - 1], 0.0);
        let grad = |y: &Tensor| {
            let g = (y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            g.get(x.as_tensor()).unwrap().clone()
        };
        let (gf, gw) = (grad(&fused), grad(&written));
        assert!(max_diff(&gf, &gw) < 1e-6, "{gf} vs {gw}");
        assert!(max_diff(&gw, &gw.zeros_like().unwrap()) > 1e-3);
    }

    /// A step on a batch run in parts is the step on the whole batch: same weights after training.
    #[test]
    fn a_batch_run_in_parts_takes_the_same_step_as_the_whole_batch() {
        let (tensors, shape, states) = toy_layer();
        let s: Vec<&[f32]> = states.iter().map(Vec::as_slice).collect();
        let labels = [true, false, true, true, false, false, true, false];
        // The epochs' mean losses: epoch 2's depends on every step of epoch 1. (The weights
        // themselves are restored to the best epoch's, which two validation texts cannot tell.)
        let train = |budget: usize| {
            let top = Top::from_encoder(&tensors, 0, 1, shape).unwrap();
            let opts = FineTuneOptions {
                epochs: 3,
                batch: 6,
                learning_rate: 1e-2,
                part_budget: budget,
                ..Default::default()
            };
            let mut losses = Vec::new();
            train(
                &top,
                (&s[..6], &labels[..6]),
                (&s[6..], &labels[6..]),
                &opts,
                &mut |e| losses.push(e.loss),
                &mut |_, _| {},
            )
            .unwrap();
            losses
        };
        let whole = train(usize::MAX);
        // 2 texts of up to 41 tokens per part: the batch of 6 runs in 3 parts.
        let cut = train(2 * 41 * 41);
        assert_eq!(whole.len(), cut.len());
        for (a, b) in whole.iter().zip(&cut) {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{whole:?} vs {cut:?}"
            );
        }
        assert!(
            (whole[0] - whole[whole.len() - 1]).abs() > 1e-4,
            "training did not move: {whole:?}"
        );
    }

    /// Adapters: the layer starts as the pre-trained one (B = 0), training moves only the adapters
    /// (the frozen weights stay), and what is exported is W + scale · B·A, which the vectors read.
    #[test]
    fn adapters_start_from_the_layer_train_alone_and_export_merged() {
        let (tensors, shape, states) = toy_layer();
        let s: Vec<&[f32]> = states.iter().map(Vec::as_slice).collect();
        let labels = [true, false, true, true, false, false, true, false];
        let plain = Top::from_encoder(&tensors, 0, 1, shape).unwrap();
        let top = Top::from_encoder(&tensors, 0, 1, shape)
            .unwrap()
            .with_adapters(2, 618)
            .unwrap();
        assert_eq!(top.vectors(&s, 4).unwrap(), plain.vectors(&s, 4).unwrap());
        // 6 weights, each 2 × (in + out): q, k, v, o 8 → 8; intermediate 8 → 16; output 16 → 8.
        assert_eq!(top.trained_values(), 4 * 2 * 16 + 2 * 2 * 24);
        // Gradients reach the adapters and never the frozen weights; a few steps move the adapters.
        // (The classifier trains too: it starts at zero, and a zero classifier sends nothing back.)
        let vars: Vec<Var> = top
            .vars()
            .into_iter()
            .chain([top.cls_w.clone(), top.cls_b.clone()])
            .collect();
        let labels = |idx: &[usize]| {
            let y: Vec<u32> = idx.iter().map(|i| u32::from(labels[*i])).collect();
            Tensor::from_vec(y, idx.len(), &Device::Cpu)
        };
        let opts = FineTuneOptions::default();
        let (_, grads) = batch_grads(&top, &vars, &s, &[0, 1, 2, 3, 4, 5], &labels, &opts).unwrap();
        for ad in &top.layers[0].adapters {
            assert!(grads.get(ad.b.as_tensor()).is_some(), "no gradient for B");
        }
        for v in &top.layers[0].p {
            assert!(
                grads.get(v.as_tensor()).is_none(),
                "a frozen weight got a gradient"
            );
        }
        let mut opt = AdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr: 1e-2,
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..3 {
            let (_, g) = batch_grads(&top, &vars, &s, &[0, 1, 2, 3, 4, 5], &labels, &opts).unwrap();
            opt.step(&g).unwrap();
        }
        let layer = &top.layers[0];
        for (i, v) in layer.p.iter().enumerate() {
            let was = &tensors[&format!("encoder.layer.0.{}", LAYER_PARAMS[i])];
            let moved = (v.as_tensor() - was)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert_eq!(
                moved.to_scalar::<f32>().unwrap(),
                0.0,
                "{}",
                LAYER_PARAMS[i]
            );
        }
        let out = top.export("t.").unwrap();
        for ad in &layer.adapters {
            let name = format!("t.0.{}", LAYER_PARAMS[ad.param]);
            let want = (layer.p[ad.param].as_tensor()
                + ad.b
                    .as_tensor()
                    .matmul(ad.a.as_tensor())
                    .unwrap()
                    .affine(ADAPTER_SCALE, 0.0)
                    .unwrap())
            .unwrap();
            let diff = (&out[&name] - &want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-6, "{name}");
            let b = ad.b.as_tensor().abs().unwrap().max_all().unwrap();
            assert!(
                b.to_scalar::<f32>().unwrap() > 0.0,
                "{name}: the adapter did not train"
            );
        }
        // The merged weights alone (a plain layer over them) give the adapted vectors.
        let merged: HashMap<String, Tensor> = out
            .iter()
            .map(|(k, v)| (k.replacen("t.0.", "encoder.layer.0.", 1), v.clone()))
            .collect();
        let again = Top::from_encoder(&merged, 0, 1, shape).unwrap();
        let (a, b) = (top.vectors(&s, 4).unwrap(), again.vectors(&s, 4).unwrap());
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
}
