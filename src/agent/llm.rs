//! The local LLM: a GGUF model through llama-cpp-2 in process (the default), or an OpenAI-compatible
//! server (llama-server, vLLM) for deployments that outgrow one machine.
//!
//! In process, one model instance lives on a worker thread behind a bounded queue. The fixed system
//! prompt is processed once and its KV cache kept: each question only processes its own tokens (prompt
//! processing on 2 CPU cores is the latency bottleneck). The chat template comes from the model's
//! metadata. Decoding is greedy under a GBNF grammar, so the output always parses.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("LLM model {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("LLM: {0}")]
    Run(String),
    #[error("LLM busy: {0} questions already waiting")]
    Busy(usize),
    #[error("LLM took longer than {0:?}")]
    Timeout(Duration),
    #[error("LLM server {url}: {reason}")]
    Http { url: String, reason: String },
}

/// What one completion cost, as llama.cpp counted it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prompt_ms: f64,
    pub generate_ms: f64,
    /// For scoring: the log-probability of each continuation asked about, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<f64>,
}

/// Where the model runs.
pub enum Llm {
    Local(LocalLlm),
    Http(HttpLlm),
}

impl Llm {
    /// A completion of the system prompt + `user`, the reply starting with `reply_prefix`, decoded under
    /// `grammar` (GBNF whose root produces what follows the prefix).
    pub async fn complete(
        &self,
        user: &str,
        reply_prefix: &str,
        grammar: &str,
        max_tokens: usize,
    ) -> Result<Completion, LlmError> {
        match self {
            Llm::Local(l) => {
                l.submit(
                    user,
                    reply_prefix,
                    Task::Complete {
                        grammar: grammar.into(),
                        max_tokens,
                    },
                )
                .await
            }
            Llm::Http(h) => h.complete(user, reply_prefix, grammar, max_tokens).await,
        }
    }

    /// The model's log-probability of each continuation after the system prompt + `user` + the start of
    /// its reply `reply_prefix` (teacher-forced: one forward pass over the prompt, a few tokens each).
    pub async fn score(
        &self,
        user: &str,
        reply_prefix: &str,
        continuations: &[String],
    ) -> Result<Completion, LlmError> {
        match self {
            Llm::Local(l) => {
                l.submit(
                    user,
                    reply_prefix,
                    Task::Score {
                        continuations: continuations.to_vec(),
                    },
                )
                .await
            }
            Llm::Http(_) => Err(LlmError::Run(
                "scoring needs the in-process model (use llm = \"generate\" with a server)".into(),
            )),
        }
    }
}

enum Task {
    Complete { grammar: String, max_tokens: usize },
    Score { continuations: Vec<String> },
}

struct Job {
    user: String,
    reply_prefix: String,
    task: Task,
    deadline: Instant,
    reply: tokio::sync::oneshot::Sender<Result<Completion, LlmError>>,
}

/// Settings of the in-process model.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    pub model: PathBuf,
    pub threads: usize,
    pub context: u32,
    pub queue: usize,
    pub timeout: Duration,
    /// Where the system prompt's processed state is kept between runs (None: recompute every start).
    pub state_dir: Option<PathBuf>,
}

/// One model instance on a worker thread; questions wait in a bounded queue.
pub struct LocalLlm {
    /// None only while dropping.
    jobs: Option<mpsc::SyncSender<Job>>,
    worker: Option<std::thread::JoinHandle<()>>,
    queue: usize,
    timeout: Duration,
    /// Tokens of the cached system prompt.
    pub system_tokens: usize,
}

impl LocalLlm {
    /// Loads the model and processes the system prompt (blocking; a second or two for the 0.5B model).
    pub fn start(settings: LocalSettings, system: &str) -> Result<Self, LlmError> {
        let (tx, rx) = mpsc::sync_channel::<Job>(settings.queue.max(1));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, LlmError>>();
        let system = system.to_string();
        let s = settings.clone();
        let handle = std::thread::Builder::new()
            .name("dongcha-llm".into())
            .spawn(move || worker(s, system, rx, ready_tx))
            .map_err(|e| LlmError::Run(e.to_string()))?;
        let system_tokens = ready_rx
            .recv()
            .map_err(|_| LlmError::Run("the LLM worker stopped while loading".into()))??;
        Ok(Self {
            jobs: Some(tx),
            worker: Some(handle),
            queue: settings.queue,
            timeout: settings.timeout,
            system_tokens,
        })
    }

    async fn submit(
        &self,
        user: &str,
        reply_prefix: &str,
        task: Task,
    ) -> Result<Completion, LlmError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            user: user.to_string(),
            reply_prefix: reply_prefix.to_string(),
            task,
            deadline: Instant::now() + self.timeout,
            reply: tx,
        };
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| LlmError::Run("the LLM is shutting down".into()))?;
        jobs.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => LlmError::Busy(self.queue),
            mpsc::TrySendError::Disconnected(_) => LlmError::Run("the LLM worker stopped".into()),
        })?;
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(LlmError::Run("the LLM worker dropped the question".into())),
            Err(_) => Err(LlmError::Timeout(self.timeout)),
        }
    }
}

impl Drop for LocalLlm {
    /// Closes the queue and waits for the worker, so the model and llama.cpp's backend are freed before
    /// anything else starts one.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(h) = self.worker.take() {
            let _ = h.join();
        }
    }
}

fn worker(
    s: LocalSettings,
    system: String,
    jobs: mpsc::Receiver<Job>,
    ready: mpsc::Sender<Result<usize, LlmError>>,
) {
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_backend::LlamaBackend;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
    use llama_cpp_2::sampling::LlamaSampler;

    let load_err = |reason: String| LlmError::Load {
        path: s.model.display().to_string(),
        reason,
    };
    let setup = (|| {
        let mut backend = LlamaBackend::init().map_err(|e| load_err(e.to_string()))?;
        backend.void_logs();
        if !Path::new(&s.model).exists() {
            return Err(load_err("no such file (run `dongcha setup`)".into()));
        }
        let model = LlamaModel::load_from_file(&backend, &s.model, &LlamaModelParams::default())
            .map_err(|e| load_err(e.to_string()))?;
        Ok((backend, model))
    })();
    let (backend, model) = match setup {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let threads = s.threads.max(1) as i32;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(s.context))
        .with_n_batch(s.context)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = match model.new_context(&backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(load_err(e.to_string())));
            return;
        }
    };
    // The chat template from the model's metadata, split around a placeholder user message: the part
    // before is the cached prefix, the part after closes the user turn and opens the assistant's.
    const MARK: &str = "\u{1}QUESTION\u{1}";
    let split = (|| {
        let tmpl = model
            .chat_template(None)
            .map_err(|e| load_err(format!("chat template: {e}")))?;
        let msgs = [
            LlamaChatMessage::new("system".into(), system.clone())
                .map_err(|e| load_err(e.to_string()))?,
            LlamaChatMessage::new("user".into(), MARK.into())
                .map_err(|e| load_err(e.to_string()))?,
        ];
        let text = model
            .apply_chat_template(&tmpl, &msgs, true)
            .map_err(|e| load_err(format!("chat template: {e}")))?;
        let (a, b) = text
            .split_once(MARK)
            .ok_or_else(|| load_err("chat template lost the user message".into()))?;
        Ok::<_, LlmError>((a.to_string(), b.to_string()))
    })();
    let (prefix, suffix) = match split {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let vocab = model.vocab();
    let prefix_tokens = vocab.tokenize(prefix.as_bytes(), true, true);
    let n_prefix = prefix_tokens.len();
    let mut batch = LlamaBatch::new(s.context as usize, 1);
    // The processed system prompt is saved beside the data: a later start loads it (milliseconds)
    // instead of processing it again (seconds on 2 cores). The file name covers the model file, the
    // prompt and the context size; a file that does not match token for token is ignored.
    let state_file = s.state_dir.as_ref().map(|d| {
        let size = std::fs::metadata(&s.model).map(|m| m.len()).unwrap_or(0);
        let key = xxhash_rust::xxh3::xxh3_64(
            format!("{}|{size}|{}|{prefix}", s.model.display(), s.context).as_bytes(),
        );
        d.join(format!("llm-{key:016x}.state"))
    });
    let restored = state_file.as_ref().is_some_and(|f| {
        f.exists()
            && match ctx.state_load_file(f, n_prefix + 1) {
                Ok(tokens) if tokens == prefix_tokens => true,
                _ => {
                    ctx.clear_kv_cache();
                    false
                }
            }
    });
    let cached = (|| {
        if restored {
            return Ok(());
        }
        for (i, t) in prefix_tokens.iter().enumerate() {
            batch
                .add(*t, i as i32, &[0], i + 1 == n_prefix)
                .map_err(|e| LlmError::Run(e.to_string()))?;
        }
        ctx.decode(&mut batch)
            .map_err(|e| LlmError::Run(format!("system prompt: {e}")))?;
        if let Some(f) = &state_file {
            // Written under a temporary name and renamed: a reader never sees half a file.
            let tmp = f.with_extension("tmp");
            let saved = f
                .parent()
                .map(std::fs::create_dir_all)
                .transpose()
                .ok()
                .and_then(|_| ctx.state_save_file(&tmp, &prefix_tokens).ok())
                .and_then(|_| std::fs::rename(&tmp, f).ok());
            if saved.is_none() {
                tracing::debug!(
                    "could not save the system prompt's state to {}",
                    f.display()
                );
            }
        }
        Ok(())
    })();
    if let Err(e) = cached {
        let _ = ready.send(Err(e));
        return;
    }
    let _ = ready.send(Ok(n_prefix));

    while let Ok(job) = jobs.recv() {
        if Instant::now() > job.deadline {
            let _ = job.reply.send(Err(LlmError::Timeout(s.timeout)));
            continue;
        }
        let result = (|| {
            // Forget the previous question: keep only the system prompt's cache.
            ctx.clear_kv_cache_seq(Some(0), Some(n_prefix as u32), None)
                .map_err(|e| LlmError::Run(e.to_string()))?;
            let text = format!("{}{suffix}{}", job.user, job.reply_prefix);
            let tokens = vocab.tokenize(text.as_bytes(), false, false);
            let max_tokens = match &job.task {
                Task::Complete { max_tokens, .. } => *max_tokens,
                Task::Score { .. } => 16,
            };
            if n_prefix + tokens.len() + max_tokens >= s.context as usize {
                return Err(LlmError::Run("question too long".into()));
            }
            let started = Instant::now();
            batch.clear();
            for (i, t) in tokens.iter().enumerate() {
                batch
                    .add(*t, (n_prefix + i) as i32, &[0], i + 1 == tokens.len())
                    .map_err(|e| LlmError::Run(e.to_string()))?;
            }
            ctx.decode(&mut batch)
                .map_err(|e| LlmError::Run(e.to_string()))?;
            let prompt_ms = started.elapsed().as_secs_f64() * 1e3;
            let gen_start = Instant::now();
            let pos0 = n_prefix + tokens.len();
            let grammar = match job.task {
                Task::Score { continuations } => {
                    let last = log_softmax(ctx.get_logits_ith(batch.n_tokens() - 1));
                    let mut logprobs = Vec::with_capacity(continuations.len());
                    let mut scored = 0;
                    for c in &continuations {
                        let ct = vocab.tokenize(c.as_bytes(), false, false);
                        let Some(first) = ct.first() else {
                            logprobs.push(f64::NEG_INFINITY);
                            continue;
                        };
                        let mut lp = last[first.0 as usize];
                        if ct.len() > 1 {
                            ctx.clear_kv_cache_seq(Some(0), Some(pos0 as u32), None)
                                .map_err(|e| LlmError::Run(e.to_string()))?;
                            batch.clear();
                            for (i, t) in ct[..ct.len() - 1].iter().enumerate() {
                                batch
                                    .add(*t, (pos0 + i) as i32, &[0], true)
                                    .map_err(|e| LlmError::Run(e.to_string()))?;
                            }
                            ctx.decode(&mut batch)
                                .map_err(|e| LlmError::Run(e.to_string()))?;
                            for (i, t) in ct[1..].iter().enumerate() {
                                lp += log_softmax(ctx.get_logits_ith(i as i32))[t.0 as usize];
                            }
                        }
                        scored += ct.len();
                        logprobs.push(lp);
                    }
                    return Ok(Completion {
                        text: String::new(),
                        prompt_tokens: tokens.len(),
                        generated_tokens: scored,
                        prompt_ms,
                        generate_ms: gen_start.elapsed().as_secs_f64() * 1e3,
                        logprobs,
                    });
                }
                Task::Complete { grammar, .. } => grammar,
            };
            let mut sampler = LlamaSampler::chain_simple([
                LlamaSampler::grammar(&model, &grammar, "root")
                    .map_err(|e| LlmError::Run(format!("grammar: {e}")))?,
                LlamaSampler::greedy(),
            ]);
            let mut pos = pos0;
            let mut out = Vec::new();
            let mut generated = 0;
            loop {
                // `sample` also accepts the token into the grammar (never call accept again).
                let token = sampler.sample(&ctx, batch.n_tokens() - 1);
                if vocab.is_eog(token) {
                    break;
                }
                out.extend(vocab.token_to_piece(token, false, None));
                generated += 1;
                if generated >= max_tokens {
                    return Err(LlmError::Run(format!(
                        "no complete call within {max_tokens} tokens"
                    )));
                }
                if Instant::now() > job.deadline {
                    return Err(LlmError::Timeout(s.timeout));
                }
                batch.clear();
                batch
                    .add(token, pos as i32, &[0], true)
                    .map_err(|e| LlmError::Run(e.to_string()))?;
                pos += 1;
                ctx.decode(&mut batch)
                    .map_err(|e| LlmError::Run(e.to_string()))?;
            }
            Ok(Completion {
                text: String::from_utf8_lossy(&out).into_owned(),
                prompt_tokens: tokens.len(),
                generated_tokens: generated,
                prompt_ms,
                generate_ms: gen_start.elapsed().as_secs_f64() * 1e3,
                logprobs: Vec::new(),
            })
        })();
        let _ = job.reply.send(result);
    }
}

fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|x| (*x as f64 - max).exp()).sum();
    let log_z = max + sum.ln();
    logits.iter().map(|x| *x as f64 - log_z).collect()
}

/// Raw decoding speed of a GGUF on this machine, measured the way llama.cpp's `llama-bench` does
/// (pp: one batch of `prompt` tokens; tg: `generate` single-token decodes), timed around the decodes.
#[derive(Debug, Clone, Serialize)]
pub struct RawSpeed {
    pub prompt_tokens: usize,
    pub prompt_tokens_per_s: f64,
    pub generated_tokens: usize,
    pub generate_tokens_per_s: f64,
}

pub fn raw_speed(
    model_path: &Path,
    threads: usize,
    prompt: usize,
    generate: usize,
) -> Result<RawSpeed, LlmError> {
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_backend::LlamaBackend;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::model::params::LlamaModelParams;
    let err = |e: String| LlmError::Run(e);
    let mut backend = LlamaBackend::init().map_err(|e| err(e.to_string()))?;
    backend.void_logs();
    let model = LlamaModel::load_from_file(&backend, model_path, &LlamaModelParams::default())
        .map_err(|e| err(e.to_string()))?;
    let n = (prompt + generate + 16) as u32;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n))
        .with_n_batch(n)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let mut ctx = model
        .new_context(&backend, params)
        .map_err(|e| err(e.to_string()))?;
    // A fixed token (like llama-bench's random tokens, content does not change the cost).
    let token = model.vocab().bos();
    let mut batch = LlamaBatch::new(n as usize, 1);
    for i in 0..prompt {
        batch
            .add(token, i as i32, &[0], i + 1 == prompt)
            .map_err(|e| err(e.to_string()))?;
    }
    let started = Instant::now();
    ctx.decode(&mut batch).map_err(|e| err(e.to_string()))?;
    let prompt_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for i in 0..generate {
        batch.clear();
        batch
            .add(token, (prompt + i) as i32, &[0], true)
            .map_err(|e| err(e.to_string()))?;
        ctx.decode(&mut batch).map_err(|e| err(e.to_string()))?;
    }
    let generate_s = started.elapsed().as_secs_f64();
    Ok(RawSpeed {
        prompt_tokens: prompt,
        prompt_tokens_per_s: prompt as f64 / prompt_s.max(1e-9),
        generated_tokens: generate,
        generate_tokens_per_s: generate as f64 / generate_s.max(1e-9),
    })
}

/// An OpenAI-compatible chat-completions server. llama-server honours the `grammar` field; other
/// servers ignore it, and the reply is still parsed and validated like any other.
pub struct HttpLlm {
    pub url: String,
    pub model: String,
    pub system: String,
    pub timeout: Duration,
    client: reqwest::Client,
}

impl HttpLlm {
    pub fn new(url: &str, model: &str, system: &str, timeout: Duration) -> Result<Self, LlmError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| LlmError::Http {
                url: url.into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            model: model.into(),
            system: system.into(),
            timeout,
            client,
        })
    }

    async fn complete(
        &self,
        user: &str,
        reply_prefix: &str,
        grammar: &str,
        max_tokens: usize,
    ) -> Result<Completion, LlmError> {
        let http = |reason: String| LlmError::Http {
            url: self.url.clone(),
            reason,
        };
        // The server writes the prefix itself: a grammar whose root starts with it.
        let full = format!(
            "root ::= {} calls\n{}",
            crate::tools::grammar::gbnf_literal(reply_prefix),
            grammar.replacen("root ::=", "calls ::=", 1)
        );
        let body = serde_json::json!({
            "model": self.model,
            "messages": [{"role": "system", "content": self.system}, {"role": "user", "content": user}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "grammar": full,
        });
        let mut req = self
            .client
            .post(format!("{}/v1/chat/completions", self.url))
            .json(&body);
        if let Ok(key) = std::env::var("DONGCHA_LLM_API_KEY") {
            req = req.bearer_auth(key);
        }
        let started = Instant::now();
        let resp = req.send().await.map_err(|e| http(e.to_string()))?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.map_err(|e| http(e.to_string()))?;
        if !status.is_success() {
            return Err(http(format!("{status}: {v}")));
        }
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| http(format!("no content in {v}")))?
            .trim();
        let text = text.strip_prefix(reply_prefix).unwrap_or(text).to_string();
        Ok(Completion {
            text,
            prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as usize,
            generated_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0) as usize,
            prompt_ms: 0.0,
            generate_ms: started.elapsed().as_secs_f64() * 1e3,
            logprobs: Vec::new(),
        })
    }
}
