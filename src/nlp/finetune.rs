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
}

impl Default for FineTuneOptions {
    fn default() -> Self {
        Self {
            layers: 2,
            epochs: 3,
            batch: 32,
            learning_rate: 5e-5,
            head_learning_rate: 2e-3,
            weight_decay: 1e-2,
            seed: 618,
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

/// One trainable layer: its parameters in [`LAYER_PARAMS`] order.
struct TrainLayer {
    p: Vec<Var>,
}

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

fn linear(x: &Tensor, w: &Var, b: &Var) -> candle_core::Result<Tensor> {
    x.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())
}

impl TrainLayer {
    /// `x`: (batch × len, hidden) token states; `bias`: (batch, 1, 1, len) with 0 for real tokens and
    /// a large negative number for padding.
    fn forward(
        &self,
        x: &Tensor,
        (b, t): (usize, usize),
        bias: &Tensor,
        s: Shape,
    ) -> candle_core::Result<Tensor> {
        let p = &self.p;
        let dh = s.hidden / s.heads;
        let split = |y: Tensor| -> candle_core::Result<Tensor> {
            y.reshape((b, t, s.heads, dh))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(linear(x, &p[0], &p[1])?)?;
        let k = split(linear(x, &p[2], &p[3])?)?;
        let v = split(linear(x, &p[4], &p[5])?)?;
        let scores = q
            .matmul(&k.t()?.contiguous()?)?
            .affine(1.0 / (dh as f64).sqrt(), 0.0)?
            .broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * t, s.hidden))?;
        let x = layer_norm(
            &(x + linear(&ctx, &p[6], &p[7])?)?,
            p[8].as_tensor(),
            p[9].as_tensor(),
            s.eps,
        )?;
        let f = linear(&x, &p[10], &p[11])?.gelu_erf()?;
        layer_norm(
            &(&x + linear(&f, &p[12], &p[13])?)?,
            p[14].as_tensor(),
            p[15].as_tensor(),
            s.eps,
        )
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

fn batch(states: &[&[f32]], h: usize, device: &Device) -> candle_core::Result<Batch> {
    let b = states.len();
    let t = states.iter().map(|s| s.len() / h).max().unwrap_or(1).max(1);
    let mut x = vec![0f32; b * t * h];
    let mut mask = vec![0f32; b * t];
    for (i, s) in states.iter().enumerate() {
        x[i * t * h..i * t * h + s.len()].copy_from_slice(s);
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
            layers.push(TrainLayer { p });
        }
        Ok(Self {
            shape,
            layers,
            cls_w: Var::zeros((2, shape.hidden), DType::F32, &device)?,
            cls_b: Var::zeros(2, DType::F32, &device)?,
        })
    }

    /// Unit-length mean-pooled sentence vectors of a batch: (batch, hidden).
    fn pooled(&self, bt: &Batch) -> candle_core::Result<Tensor> {
        let mut x = bt.x.clone();
        for layer in &self.layers {
            x = layer.forward(&x, (bt.b, bt.t), &bt.bias, self.shape)?;
        }
        let x = x.reshape((bt.b, bt.t, self.shape.hidden))?;
        let summed = x.broadcast_mul(&bt.mask)?.sum(1)?;
        let counts = bt.mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        mean.broadcast_div(&norm)
    }

    fn logits(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        linear(&pooled.affine(LOGIT_SCALE, 0.0)?, &self.cls_w, &self.cls_b)
    }

    /// Sentence vectors for token states (the training-time forward pass), `batch` texts at a time.
    pub fn vectors(
        &self,
        states: &[&[f32]],
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>, FineTuneError> {
        let mut out = Vec::with_capacity(states.len());
        for chunk in states.chunks(batch_size.max(1)) {
            let bt = batch(chunk, self.shape.hidden, &Device::Cpu)?;
            out.extend(self.pooled(&bt)?.to_vec2::<f32>()?);
        }
        Ok(out)
    }

    /// The trained layers under BERT's names, prefixed `{prefix}{i}.` (layer `i` of the branch).
    pub fn export(&self, prefix: &str) -> Result<HashMap<String, Tensor>, FineTuneError> {
        let mut out = HashMap::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (name, v) in LAYER_PARAMS.iter().zip(&layer.p) {
                out.insert(format!("{prefix}{i}.{name}"), v.as_tensor().copy()?);
            }
        }
        Ok(out)
    }

    fn vars(&self) -> Vec<Var> {
        self.layers
            .iter()
            .flat_map(|l| l.p.iter().cloned())
            .collect()
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
    pub fn accuracy(&self, states: &[&[f32]], positive: &[bool]) -> Result<f64, FineTuneError> {
        let order = by_length(states, self.shape.hidden);
        let mut right = 0usize;
        for chunk in order.chunks(64) {
            let s: Vec<&[f32]> = chunk.iter().map(|i| states[*i]).collect();
            let bt = batch(&s, self.shape.hidden, &Device::Cpu)?;
            let l = self.logits(&self.pooled(&bt)?)?.to_vec2::<f32>()?;
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
fn by_length(states: &[&[f32]], h: usize) -> Vec<usize> {
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
pub fn train(
    top: &Top,
    (states, positive): (&[&[f32]], &[bool]),
    (val_states, val_positive): (&[&[f32]], &[bool]),
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
            .map(|idx| {
                let s: Vec<&[f32]> = idx.iter().map(|i| states[*i]).collect();
                let bt = batch(&s, h, &device)?;
                Ok((top.pooled(&bt)?.detach(), labels(idx)?))
            })
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
            let idx = batches[*i];
            let s: Vec<&[f32]> = idx.iter().map(|i| states[*i]).collect();
            let bt = batch(&s, h, &device)?;
            let loss =
                candle_nn::loss::cross_entropy(&top.logits(&top.pooled(&bt)?)?, &labels(idx)?)?;
            let grads = loss.backward()?;
            layers_opt.step(&grads)?;
            head_opt.step(&grads)?;
            loss_sum += loss.to_scalar::<f32>()?;
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
