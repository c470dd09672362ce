//! `dongcha train` and `dongcha eval sentiment|intent`: the review heads, trained and scored on their
//! corpora (routing is evaluated in `agent_cmd`).

use anyhow::Result;

use dongcha::config::Config;
use dongcha::progress;

use super::{EvalCommand, TrainCommand, is_tty};

pub fn train(cfg: &Config, what: TrainCommand) -> Result<()> {
    match what {
        TrainCommand::Sentiment {
            hidden,
            epochs,
            learning_rate,
            weight_decay,
            limit,
            if_missing,
            no_ngram,
            validate,
            json,
        } => {
            let stem = dongcha::heads::sentiment_stem(cfg);
            if if_missing && stem.with_extension("safetensors").exists() {
                println!("sentiment head already trained: {}", stem.display());
                return Ok(());
            }
            let opts = dongcha::nlp::sentiment::TrainOptions {
                ngram: !no_ngram,
                hidden,
                epochs,
                learning_rate,
                weight_decay,
                ..Default::default()
            };
            let bar = progress::count_bar(0, is_tty(), "encoding");
            let started = std::time::Instant::now();
            let s = dongcha::heads::train_sentiment(cfg, &opts, limit, validate, &bar)?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            let c = &s.corpus;
            println!(
                "corpus: {} lines, {} repeats, {} texts labelled both ways dropped -> {} texts; \
                 train {}, held out {} (xxh3(text) % 5 == 0)",
                c.lines, c.repeated_lines, c.conflicting_dropped, c.unique, c.train, c.held_out
            );
            println!(
                "head: {} (trained in {:.1} s)\nheld-out report ({} texts; {:.1}% fell in the neutral band):\n",
                s.head.display(),
                started.elapsed().as_secs_f64(),
                s.report.total,
                100.0 * s.neutral_share
            );
            print!("{}", s.report);
            println!(
                "\nreproduce: dongcha eval sentiment --data {}",
                s.held_out_file.display()
            );
            Ok(())
        }
    }
}

pub fn eval(cfg: &Config, what: EvalCommand) -> Result<()> {
    match what {
        EvalCommand::Routing { .. } | EvalCommand::Support { .. } => {
            anyhow::bail!("routing and support are evaluated by their own commands")
        }
        EvalCommand::Intent {
            data,
            none_margin,
            json,
        } => {
            let bar = progress::count_bar(0, is_tty(), "encoding");
            let e = dongcha::heads::eval_intent(cfg, data.as_deref(), none_margin, &bar)?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                println!(
                    "{} ({} texts; {} exemplars, k = {})\n",
                    data.as_ref()
                        .map(|d| d.display().to_string())
                        .unwrap_or_else(|| {
                            "models/intent_exemplars.tsv, test part (xxh3(text) % 10 < 3)".into()
                        }),
                    e.report.total,
                    e.exemplars,
                    e.k
                );
                print!("{}", e.report);
                println!(
                    "\naccuracy by language: zh {:.4}, en {:.4}",
                    e.accuracy_zh, e.accuracy_en
                );
            }
            Ok(())
        }
        EvalCommand::Sentiment { data, json } => {
            let bar = progress::count_bar(0, is_tty(), "encoding");
            let report = dongcha::heads::eval_sentiment(cfg, &data, &bar)?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{} ({} texts)\n", data.display(), report.total);
                print!("{report}");
            }
            Ok(())
        }
    }
}
