//! `dongcha ask`, `route`, `chat`, `eval routing`, `bench ask` and `insight sales`: the terminal front of
//! the agent. The chat platforms call the same `Agent`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use dongcha::agent::router::RouterSettings;
use dongcha::agent::{Agent, Turn};
use dongcha::config::Config;

/// The routing set shipped with the repository (`question<TAB>expected`).
pub const ROUTING_TSV: &str = include_str!("../tests/data/routing.tsv");
/// Questions that need a plan of calls, and look-alikes that need one call.
pub const PLANS_TSV: &str = include_str!("../tests/data/plans.tsv");

/// Which part of the routing set: held out for reporting (40%, by a hash of the question), the rest for
/// tuning.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Test,
    Tune,
    All,
}

pub fn is_test_question(q: &str) -> bool {
    xxhash_rust::xxh3::xxh3_64(q.trim().as_bytes()) % 10 < 4
}

/// Whether a question of an evaluation set belongs to `part` (the held-out part by [`is_test_question`]).
fn in_part(q: &str, part: Part) -> bool {
    match part {
        Part::All => true,
        Part::Test => is_test_question(q),
        Part::Tune => !is_test_question(q),
    }
}

pub fn parse_routing(text: &str, source: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (q, t) = line
            .rsplit_once('\t')
            .with_context(|| format!("{source} line {}: expected question<TAB>expected", i + 1))?;
        if q == "question" {
            continue;
        }
        let t = t.trim();
        // One tool, or a plan: "tool(key=value | …)" or "a + b".
        for name in t.split(" + ").map(|x| x.split('(').next().unwrap_or(x)) {
            anyhow::ensure!(
                dongcha::tools::NAMES.contains(&name),
                "{source} line {}: unknown tool {name:?}",
                i + 1
            );
        }
        out.push((q.trim().to_string(), t.to_string()));
    }
    Ok(out)
}

pub async fn ask(cfg: &Config, question: &str, json: bool, llm: bool) -> Result<()> {
    let agent = Agent::open(cfg, llm).await?;
    let a = agent.ask(question, &mut Vec::new()).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"tool": a.tool, "args": a.args,
            "result": a.result, "reply": a.reply, "timings_ms": a.timings_ms, "route": a.route}))?
        );
    } else {
        println!("{}", a.reply);
    }
    Ok(())
}

pub async fn route(cfg: &Config, question: &str, llm: bool) -> Result<()> {
    let agent = Agent::open(cfg, llm).await?;
    let r = agent.route(question, &[]).await?;
    println!(
        "{}",
        serde_json::to_string(&serde_json::json!({"tool": r.tool, "args": r.args}))?
    );
    Ok(())
}

pub async fn chat(cfg: &Config, llm: bool) -> Result<()> {
    let agent = Agent::open(cfg, llm).await?;
    let mut history: Vec<Turn> = Vec::new();
    let stdin = std::io::stdin();
    eprintln!(
        "dongcha chat: ask about sales, customers and reviews (Chinese or English); empty line or Ctrl-D quits."
    );
    let mut line_no = 0u64;
    loop {
        eprint!("> ");
        std::io::stderr().flush().ok();
        let mut bytes = Vec::new();
        if stdin.lock().read_until(b'\n', &mut bytes)? == 0 {
            break;
        }
        line_no += 1;
        // A line that is not UTF-8 gets a reply saying so; the lines after it are still read.
        let line = match std::str::from_utf8(&bytes) {
            Ok(l) => l,
            Err(e) => {
                println!(
                    "error: line {line_no} is not UTF-8 text (bad byte at {}); please type it again\n",
                    e.valid_up_to() + 1
                );
                continue;
            }
        };
        if line.trim().is_empty() {
            break;
        }
        match agent.ask(line.trim(), &mut history).await {
            Ok(a) => println!("{}\n", a.reply),
            Err(e) => println!("error: {e}\n"),
        }
        // Keep the last few turns: follow-ups only look one back.
        if history.len() > 8 {
            history.drain(..history.len() - 8);
        }
    }
    Ok(())
}

/// What `dongcha eval routing` does.
#[derive(Clone, Copy)]
pub struct RoutingEval {
    pub part: Part,
    pub tune: bool,
    pub llm: bool,
    /// Also answer each question and count the grounding check's stops.
    pub answer: bool,
    /// Cross-validate the encoder router over the file's questions added to its examples.
    pub cv: bool,
    pub json: bool,
}

pub async fn eval_routing(cfg: &Config, data: Option<&Path>, opts: RoutingEval) -> Result<()> {
    let RoutingEval {
        part,
        tune,
        llm,
        answer,
        json,
        cv,
    } = opts;
    let (text, source) = match data {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            ROUTING_TSV.to_string(),
            "tests/data/routing.tsv".to_string(),
        ),
    };
    let all = parse_routing(&text, &source)?;
    let pick = |p: Part| -> Vec<(String, String)> {
        all.iter().filter(|(q, _)| in_part(q, p)).cloned().collect()
    };
    let mut agent = Agent::open(cfg, llm).await?;
    let configured = RouterSettings {
        k: cfg.agent.neighbours,
        lexical_weight: cfg.agent.lexical_weight,
        confident_margin: cfg.agent.confident_margin,
        shortlist: cfg.agent.shortlist.max(2),
        head_weight: cfg.agent.head_weight,
    };
    if cv {
        return cross_validate(&agent, &pick(part)).await;
    }
    if tune {
        // Encoder-router settings by accuracy on the tuning part (the held-out part is never read), or on
        // a whole file of questions already looked at (`--data FILE --part all`).
        let set = pick(if part == Part::All {
            Part::All
        } else {
            Part::Tune
        });
        let mut results = Vec::new();
        for lexical_weight in [0.0, 0.25, 0.5, 0.75, 1.0, 1.5] {
            for k in [1, 2, 3, 5] {
                agent.set_router_settings(RouterSettings {
                    lexical_weight,
                    k,
                    ..configured
                });
                let mut right = 0;
                let mut margins = Vec::new();
                for (q, expected) in &set {
                    let r = agent.rank(q)?;
                    let ok = r.best().0 == expected;
                    right += ok as usize;
                    margins.push((r.margin(), ok));
                }
                results.push((lexical_weight, k, right, margins));
            }
        }
        println!("tuning part: {} questions", set.len());
        println!("{:>8} {:>3} {:>9}", "lexical", "k", "accuracy");
        for (w, k, right, _) in &results {
            println!("{w:>8.2} {k:>3} {:>9.3}", *right as f64 / set.len() as f64);
        }
        if let Some((w, k, right, margins)) = results.iter().max_by_key(|r| r.2) {
            println!(
                "best: lexical_weight {w}, neighbours {k}: {right}/{} right",
                set.len()
            );
            for m in [0.01f32, 0.02, 0.04, 0.06, 0.08, 0.1] {
                let below: Vec<&(f32, bool)> = margins.iter().filter(|(x, _)| *x < m).collect();
                let wrong_above = margins.iter().filter(|(x, ok)| *x >= m && !ok).count();
                println!(
                    "  confident_margin {m:.2}: {} questions go to the LLM ({} of them wrong by the encoder); {} wrong above it",
                    below.len(),
                    below.iter().filter(|(_, ok)| !ok).count(),
                    wrong_above
                );
            }
        }
        agent.set_router_settings(configured);
        if agent.llm_enabled() {
            let llm = agent.llm().await?;
            // The LLM's re-ranking, with the configured router: its log-probabilities over each question's
            // shortlist, then accuracy for each (margin, weight).
            let mut rows = Vec::new();
            for (q, expected) in &set {
                let r = agent.rank(q)?;
                let short: Vec<(&str, f32)> = r
                    .scores
                    .iter()
                    .take(configured.shortlist)
                    .copied()
                    .collect();
                let names: Vec<&str> = short.iter().map(|(t, _)| *t).collect();
                let (lp, _) = agent.llm_scores(llm, q, &names).await?;
                rows.push((short, lp, r.margin(), expected.clone(), q.clone()));
            }
            let llm_alone = rows
                .iter()
                .filter(|(short, lp, _, e, _)| {
                    let i = (0..lp.len())
                        .max_by(|a, b| lp[*a].total_cmp(&lp[*b]))
                        .unwrap_or(0);
                    short[i].0 == e
                })
                .count();
            println!(
                "LLM alone among the router's top {}: {llm_alone}/{} right",
                configured.shortlist,
                set.len()
            );
            for (short, lp, _, e, q) in &rows {
                let i = (0..lp.len())
                    .max_by(|a, b| lp[*a].total_cmp(&lp[*b]))
                    .unwrap_or(0);
                if short[i].0 != e {
                    let names: Vec<String> = short
                        .iter()
                        .zip(lp)
                        .map(|((t, _), l)| format!("{t} {:.2}", l.exp()))
                        .collect();
                    println!("  {q:?} expected {e}: {}", names.join(", "));
                }
            }
            println!("re-ranking accuracy (rows: confident_margin, columns: llm_weight):");
            let weights = [0.0f32, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1];
            println!(
                "{:>8} {}",
                "",
                weights
                    .iter()
                    .map(|w| format!("{w:>7}"))
                    .collect::<String>()
            );
            for m in [0.01f32, 0.02, 0.04, 0.06, 0.1, 1.0] {
                let accs: String = weights
                    .iter()
                    .map(|w| {
                        let right = rows
                            .iter()
                            .filter(|(short, lp, margin, e, _)| {
                                let pick = if *margin < m {
                                    short
                                        .iter()
                                        .zip(lp)
                                        .map(|((t, s), l)| (*t, s + w * *l as f32))
                                        .max_by(|a, b| a.1.total_cmp(&b.1))
                                        .map(|x| x.0)
                                        .unwrap_or("")
                                } else {
                                    short[0].0
                                };
                                pick == e
                            })
                            .count();
                        format!("{:>7.3}", right as f64 / set.len() as f64)
                    })
                    .collect();
                println!("{m:>8.2} {accs}");
            }
        }
        return Ok(());
    }
    let part_name = match part {
        Part::Test => "held-out part (40%, by a hash of the question)",
        Part::Tune => "tuning part",
        Part::All => "all questions",
    };
    let mut sets = vec![(source.clone(), pick(part))];
    if data.is_none() {
        let plans = parse_routing(PLANS_TSV, "tests/data/plans.tsv")?;
        let plans: Vec<(String, String)> = plans
            .into_iter()
            .filter(|(q, _)| in_part(q, part))
            .collect();
        sets.push(("tests/data/plans.tsv".to_string(), plans));
    }
    let mut reports = Vec::new();
    for (source, set) in &sets {
        anyhow::ensure!(!set.is_empty(), "no questions in that part of {source}");
        let r = score_routing(&agent, set, answer).await?;
        if !json {
            r.print(source, part_name, answer);
        }
        reports.push(serde_json::json!({"source": source, "report": r}));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}

/// Whether an expected route is a plan (`tool(…)` or `a + b`) rather than one call.
fn is_plan(expected: &str) -> bool {
    expected.contains('(') || expected.contains(" + ")
}

/// One evaluation set's routing figures.
#[derive(serde::Serialize)]
struct RoutingReport {
    questions: usize,
    right: usize,
    accuracy: f64,
    /// Questions whose expected route is one call, and those right.
    single: (usize, usize),
    /// Questions whose expected route is a plan, and those right.
    plans: (usize, usize),
    stages: BTreeMap<String, usize>,
    #[serde(skip)]
    confusion: BTreeMap<(String, String), usize>,
    grounding_stops: Option<usize>,
    #[serde(skip)]
    ungrounded: Vec<(String, String, Vec<String>)>,
    misses: Vec<serde_json::Value>,
}

async fn score_routing(
    agent: &Agent,
    set: &[(String, String)],
    answer: bool,
) -> Result<RoutingReport> {
    let mut confusion: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut stages: BTreeMap<String, usize> = BTreeMap::new();
    let (mut right, mut single, mut plans) = (0, (0, 0), (0, 0));
    // Questions whose composed reply the grounding check stopped, with the figures it stopped on.
    let mut ungrounded: Vec<(String, String, Vec<String>)> = Vec::new();
    for (q, expected) in set {
        let r = if answer {
            let a = agent.ask(q, &mut Vec::new()).await?;
            if !a.ungrounded.is_empty() {
                ungrounded.push((q.clone(), a.route.signature(), a.ungrounded.clone()));
            }
            a.route
        } else {
            agent.route(q, &[]).await?
        };
        let stage = if r.stage.starts_with("encoder (") {
            "encoder (LLM failed)".to_string()
        } else {
            r.stage.clone()
        };
        *stages.entry(stage).or_default() += 1;
        if r.clarify.is_some() {
            *stages
                .entry("of which a clarifying question".into())
                .or_default() += 1;
        }
        let got = r.signature();
        let kind = |e: &str| {
            if is_plan(e) {
                "plan".to_string()
            } else {
                e.to_string()
            }
        };
        *confusion.entry((kind(expected), kind(&got))).or_default() += 1;
        let ok = &got == expected;
        right += ok as usize;
        let bucket = if is_plan(expected) {
            &mut plans
        } else {
            &mut single
        };
        bucket.0 += 1;
        bucket.1 += ok as usize;
        if !ok {
            misses.push(serde_json::json!({"question": q, "expected": expected, "got": got, "stage": r.stage}));
        }
    }
    Ok(RoutingReport {
        questions: set.len(),
        right,
        accuracy: right as f64 / set.len() as f64,
        single,
        plans,
        stages,
        confusion,
        grounding_stops: answer.then_some(ungrounded.len()),
        ungrounded,
        misses,
    })
}

impl RoutingReport {
    fn print(&self, source: &str, part_name: &str, answer: bool) {
        let acc = |(n, r): (usize, usize)| {
            if n == 0 {
                "—".to_string()
            } else {
                format!("{r}/{n} = {:.3}", r as f64 / n as f64)
            }
        };
        println!(
            "routing on the {part_name} of {source}: {}/{} right, accuracy {:.3} (single call {}, plans {})",
            self.right,
            self.questions,
            self.accuracy,
            acc(self.single),
            acc(self.plans)
        );
        println!(
            "stages: {}",
            self.stages
                .iter()
                .map(|(s, n)| format!("{s} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("\nper tool (expected → routed; \"plan\" is any plan):");
        println!("{:<20} {:>5} {:>6}  misrouted to", "tool", "n", "right");
        for name in dongcha::tools::NAMES.iter().copied().chain(["plan"]) {
            let n: usize = self
                .confusion
                .iter()
                .filter(|((e, _), _)| e == name)
                .map(|(_, c)| c)
                .sum();
            if n == 0 {
                continue;
            }
            let ok = self
                .confusion
                .get(&(name.to_string(), name.to_string()))
                .copied()
                .unwrap_or(0);
            let wrong: Vec<String> = self
                .confusion
                .iter()
                .filter(|((e, g), _)| e == name && g != name)
                .map(|((_, g), c)| format!("{g} {c}"))
                .collect();
            println!("{name:<20} {n:>5} {ok:>6}  {}", wrong.join(", "));
        }
        if answer {
            println!(
                "\ngrounding check: stopped {} replies over the {} questions answered",
                self.ungrounded.len(),
                self.questions
            );
            for (q, tool, n) in &self.ungrounded {
                println!("  {q:?} ({tool}): {}", n.join(", "));
            }
        }
        if !self.misses.is_empty() {
            println!("\nmisses:");
            for m in &self.misses {
                println!(
                    "  {}: expected {}, got {} ({})",
                    m["question"], m["expected"], m["got"], m["stage"]
                );
            }
        }
        println!();
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

/// `dongcha bench ask`: latency of `ask` over `n` questions of the routing set (route / tool / compose),
/// and the LLM's speed next to llama.cpp's raw pp/tg figures for the same GGUF.
pub async fn bench_ask(cfg: &Config, n: usize, llm: bool) -> Result<()> {
    let agent = Agent::open(cfg, llm).await?;
    let questions: Vec<(String, String)> = parse_routing(ROUTING_TSV, "routing.tsv")?
        .into_iter()
        .filter(|(_, t)| t != "none")
        .take(n)
        .collect();
    // The shared results computed once, as `dongcha serve` does at start and after new data; then one
    // question per language, so the encoder's first call is not timed.
    agent.ctx.warm().await;
    for q in [
        "上个月的销售额是多少？",
        "Which customers are about to churn?",
    ] {
        agent.ask(q, &mut Vec::new()).await?;
    }
    let (mut route, mut tool, mut compose, mut total) = (vec![], vec![], vec![], vec![]);
    let mut slowest: Vec<(f64, f64, String, String)> = Vec::new();
    let (mut llm_calls, mut gen_tokens, mut gen_ms, mut prompt_tokens, mut prompt_ms) =
        (0, 0usize, 0.0, 0usize, 0.0);
    for (q, _) in &questions {
        let a = agent.ask(q, &mut Vec::new()).await?;
        route.push(a.timings_ms.route);
        tool.push(a.timings_ms.tool);
        compose.push(a.timings_ms.compose);
        total.push(a.timings_ms.total);
        slowest.push((
            a.timings_ms.total,
            a.timings_ms.tool,
            a.tool.clone(),
            q.clone(),
        ));
        if let Some(c) = &a.route.llm {
            llm_calls += 1;
            gen_tokens += c.generated_tokens;
            gen_ms += c.generate_ms;
            prompt_tokens += c.prompt_tokens;
            prompt_ms += c.prompt_ms;
        }
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "ask latency over {} questions ({} cores, LLM {}):",
        questions.len(),
        threads,
        if agent.llm_enabled() { "on" } else { "off" }
    );
    println!("{:<8} {:>9} {:>9}", "stage", "p50 ms", "p95 ms");
    for (name, v) in [
        ("route", &mut route),
        ("tool", &mut tool),
        ("compose", &mut compose),
        ("total", &mut total),
    ] {
        let p50 = percentile(v, 0.5);
        let p95 = percentile(v, 0.95);
        println!("{name:<8} {p50:>9.1} {p95:>9.1}");
    }
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("slowest:");
    for (t, tool_ms, tool, q) in slowest.iter().take(5) {
        println!("  {t:>8.1} ms (tool {tool_ms:.1}) {tool:<20} {q}");
    }
    println!(
        "LLM consulted on {llm_calls} of {} questions",
        questions.len()
    );
    if llm_calls > 0 {
        println!(
            "dongcha's LLM calls: prompt {:.1} tok/s ({} tokens), reply tokens (generated under the grammar, or scored when re-ranking) {:.1} tok/s ({} tokens)",
            prompt_tokens as f64 / (prompt_ms / 1e3).max(1e-9),
            prompt_tokens,
            gen_tokens as f64 / (gen_ms / 1e3).max(1e-9),
            gen_tokens
        );
    }
    if agent.llm_enabled() && cfg.agent.backend == dongcha::config::LlmBackend::Local {
        let assets = dongcha::assets::Assets::from_config(cfg)?;
        let model = dongcha::agent::gguf_in(&assets.asset_dir(&cfg.models.llm))
            .context("no GGUF in the LLM asset")?;
        drop(agent);
        let raw = tokio::task::block_in_place(|| {
            dongcha::agent::llm::raw_speed(&model, threads, 128, 32)
        })?;
        println!(
            "in-process llama.cpp, same GGUF, llama-bench style: pp128 {:.1} tok/s, tg32 {:.1} tok/s (compare scripts/bench-ask.sh's llama-bench)",
            raw.prompt_tokens_per_s, raw.generate_tokens_per_s
        );
    }
    Ok(())
}

/// Ten-fold cross-validation of the encoder router over a file of single-call questions: each fold is
/// routed by the shipped examples plus the other nine folds, so every question is new to the router that
/// routes it (the LLM is not asked). Compares the nearest examples alone, with the softmax head, and the
/// shipped examples alone.
async fn cross_validate(agent: &Agent, set: &[(String, String)]) -> Result<()> {
    use dongcha::agent::router::{self, Ranking, ToolHead};
    let set: Vec<&(String, String)> = set.iter().filter(|(_, e)| !is_plan(e)).collect();
    let examples = router::parse_examples(router::EXAMPLES_TSV).map_err(anyhow::Error::msg)?;
    // The heads are added here, fold by fold: the routers themselves score without one.
    let mut r = agent.router().clone();
    r.settings.head_weight = 0.0;
    let ex_vecs = tokio::task::block_in_place(|| {
        r.encode_all(&examples.iter().map(|(_, q)| q.as_str()).collect::<Vec<_>>())
    })?;
    let set_vecs = tokio::task::block_in_place(|| {
        r.encode_all(&set.iter().map(|(q, _)| q.as_str()).collect::<Vec<_>>())
    })?;
    let tool_index = |t: &str| dongcha::tools::NAMES.iter().position(|n| *n == t);
    let fold_of =
        |q: &str| (xxhash_rust::xxh3::xxh3_64_with_seed(q.trim().as_bytes(), 7) % 10) as usize;
    let head_weights = [0.0f32, 0.02, 0.03, 0.05, 0.08, 0.1];
    let words_weights = [0.0f32, 0.03, 0.06, 0.1, 0.15];
    let cells = head_weights.len() * words_weights.len();
    let mut right_pool = vec![0usize; cells];
    let mut right_shipped = vec![0usize; cells];
    let adjusted = |mut rk: Ranking, facts: &router::Facts, words: f32| {
        router::adjust_for_arguments(&mut rk, facts);
        router::adjust_for_categories(&mut rk, &facts.categories);
        router::adjust_for_words_by(&mut rk, facts, words);
        router::adjust_for_outside(&mut rk, facts);
        rk.best().0
    };
    let with_head = |rk: &Ranking, lp: &[f32], w: f32| Ranking {
        scores: rk
            .scores
            .iter()
            .map(|(t, s)| (*t, s + w * tool_index(t).map_or(0.0, |i| lp[i])))
            .collect(),
    };
    let labels_of = |pairs: &[(String, String)]| -> Vec<usize> {
        pairs
            .iter()
            .map(|(t, _)| tool_index(t).unwrap_or(0))
            .collect()
    };
    let classes = dongcha::tools::NAMES.len();
    let (l2, epochs) = (router::HEAD_L2, router::HEAD_EPOCHS);
    let shipped_head = ToolHead::train(&ex_vecs, &labels_of(&examples), classes, l2, epochs);
    let configured = (agent.router().settings.head_weight, router::WORDS_WEIGHT);
    let mut misses = Vec::new();
    for f in 0..10 {
        let mut pairs = examples.clone();
        let mut vecs = ex_vecs.clone();
        for ((q, e), v) in set.iter().zip(&set_vecs) {
            if fold_of(q) != f {
                pairs.push((e.clone(), q.clone()));
                vecs.push(v.clone());
            }
        }
        let head = ToolHead::train(&vecs, &labels_of(&pairs), classes, l2, epochs);
        let mut pool = r.with_examples(&pairs, vecs);
        pool.settings.head_weight = 0.0;
        for ((q, e), v) in set.iter().zip(&set_vecs) {
            if fold_of(q) != f {
                continue;
            }
            let facts = agent.facts(q);
            let rk = pool.rank_vector(q, v);
            let lp = head.log_probs(v);
            let rk0 = r.rank_vector(q, v);
            let lp0 = shipped_head.log_probs(v);
            for (i, hw) in head_weights.iter().enumerate() {
                for (j, ww) in words_weights.iter().enumerate() {
                    let cell = i * words_weights.len() + j;
                    right_pool[cell] +=
                        (adjusted(with_head(&rk, &lp, *hw), &facts, *ww) == e.as_str()) as usize;
                    let got = adjusted(with_head(&rk0, &lp0, *hw), &facts, *ww);
                    right_shipped[cell] += (got == e.as_str()) as usize;
                    if (*hw, *ww) == configured && got != e.as_str() {
                        misses.push(format!("  {q:?}: expected {e}, got {got}"));
                    }
                }
            }
        }
    }
    let n = set.len();
    println!(
        "10-fold cross-validation over {n} single-call questions (encoder router, no LLM): questions \
         right, by the shipped examples / by the examples and the other nine folds"
    );
    println!(
        "{:>12} {}",
        "head \\ words",
        words_weights
            .iter()
            .map(|w| format!("{w:>12}"))
            .collect::<String>()
    );
    for (i, hw) in head_weights.iter().enumerate() {
        let row: String = (0..words_weights.len())
            .map(|j| {
                let c = i * words_weights.len() + j;
                format!("{:>12}", format!("{}/{}", right_shipped[c], right_pool[c]))
            })
            .collect();
        println!("{hw:>12} {row}");
    }
    println!(
        "misses by the shipped examples at head weight {}, words weight {}:",
        configured.0, configured.1
    );
    for m in misses {
        println!("{m}");
    }
    Ok(())
}
