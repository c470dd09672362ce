//! `dongcha train` and `dongcha eval sentiment|intent`: the review heads, trained and scored on their
//! corpora (routing is evaluated in `agent_cmd`).

use anyhow::{Context, Result};

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
            no_english,
            data,
            force,
            validate,
            frozen,
            fine_tune: _,
            fine_tune_layers,
            fine_tune_epochs,
            fine_tune_lr,
            fine_tune_rank,
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
            let spec = dongcha::heads::TrainSpec {
                limit,
                validate,
                english: !no_english,
                shop: data,
                force,
                fine_tune: (!frozen).then(|| dongcha::nlp::finetune::FineTuneOptions {
                    layers: fine_tune_layers,
                    epochs: fine_tune_epochs,
                    learning_rate: fine_tune_lr.unwrap_or(if fine_tune_rank > 0 {
                        5e-4
                    } else {
                        5e-5
                    }),
                    rank: fine_tune_rank,
                    ..Default::default()
                }),
            };
            let epochs = progress::count_bar(epochs as u64, is_tty(), "training");
            let s = dongcha::heads::train_sentiment_with(cfg, &opts, &spec, &bar, &mut |e| {
                bar.finish_and_clear();
                epochs.set_position(e.epoch as u64);
                // "en epoch 3/30 loss 0.3120 val acc 0.8700": which head, where there is one per language.
                let head = if e.part.is_empty() {
                    String::new()
                } else {
                    format!("{} ", e.part)
                };
                let val = e
                    .val_accuracy
                    .map(|a| format!(" val acc {a:.4}"))
                    .unwrap_or_default();
                epochs.set_message(format!(
                    "{head}epoch {}/{} loss {:.4}{val}",
                    e.epoch, e.epochs, e.loss
                ));
                tracing::debug!(epoch = e.epoch, loss = e.loss, val_accuracy = ?e.val_accuracy, "epoch");
            })?;
            bar.finish_and_clear();
            epochs.finish_and_clear();
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
            if let Some(f) = &s.fine_tuned {
                let secs: Vec<String> = f
                    .seconds_per_epoch
                    .iter()
                    .map(|x| format!("{x:.0}"))
                    .collect();
                println!(
                    "fine-tuned the encoder's top layers: {} epochs ({} s each), kept epoch {}; \
                     accuracy on the texts kept aside {:.4} before, {:.4} after\n",
                    f.epochs_run,
                    secs.join(", "),
                    f.best_epoch,
                    f.val_accuracy_before,
                    f.best_val_accuracy
                );
            }
            print!("{}", s.report);
            println!(
                "\nreproduce: dongcha eval sentiment --data {}",
                s.held_out_file.display()
            );
            if let Some(p) = &s.shop {
                let c = &p.corpus;
                println!(
                    "\nyour labels, {}: {} lines -> {} texts; train {} ({} neutral not trained on, {} kept aside {}), held out {}\nheld-out report:\n",
                    p.file.display(),
                    c.lines,
                    c.unique,
                    c.train,
                    p.neutral_not_trained,
                    p.validation,
                    if p.validation >= dongcha::nlp::sentiment::EARLY_STOPPING_MIN {
                        "to stop at the best epoch"
                    } else {
                        "to watch training: too few to choose an epoch by"
                    },
                    c.held_out
                );
                print!("{}", p.after);
                let fig =
                    |r: &dongcha::nlp::report::Report| r.binary_accuracy.unwrap_or(r.accuracy);
                match &p.before {
                    Some(b) => println!(
                        "\non these held-out texts: the head there was {:.4}, the new head {:.4} (positive vs negative)",
                        fig(b),
                        fig(&p.after)
                    ),
                    None => println!("\nthere was no head before this one"),
                }
                if p.replaced {
                    println!(
                        "the new head replaced it{}: {}",
                        if p.forced { " (--force)" } else { "" },
                        p.saved_to.display()
                    );
                } else {
                    println!(
                        "the new head does not score better, so the head stays as it was; the new one is kept at {} (replace with --force)",
                        p.saved_to.display()
                    );
                }
                println!(
                    "reproduce: dongcha eval sentiment --data {}",
                    p.held_out_file.display()
                );
            }
            for e in &s.english {
                let c = &e.corpus;
                println!(
                    "\nEnglish, {}: {} rated texts ({} between -0.5 and +0.5 left out) -> {} texts; \
                     train {}, held out {}\nheld-out report:\n",
                    e.name,
                    c.lines + e.between_dropped,
                    e.between_dropped,
                    c.unique,
                    c.train,
                    c.held_out
                );
                print!("{}", e.report);
                println!(
                    "\nreproduce: dongcha eval sentiment --data {}",
                    e.held_out_file.display()
                );
            }
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
        EvalCommand::Sentiment {
            data,
            errors,
            audit,
            json,
        } => {
            let bar = progress::count_bar(0, is_tty(), "encoding");
            let e = dongcha::heads::eval_sentiment(cfg, &data, audit.as_deref(), &bar)?;
            bar.finish_and_clear();
            if let Some(path) = &errors {
                let mut out = String::from("label\tp_positive\ttext\n");
                for m in &e.misses {
                    out.push_str(&format!("{}\t{:.3}\t{}\n", m.gold, m.p_positive, m.text));
                }
                std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                println!("{} ({} texts)\n", data.display(), e.report.total);
                print!("{}", e.report);
                println!(
                    "\n{} texts on the wrong side of 0.5{}; the most confident:",
                    e.misses.len(),
                    errors
                        .as_ref()
                        .map(|p| format!(" (all in {})", p.display()))
                        .unwrap_or_default()
                );
                for m in e.misses.iter().take(5) {
                    println!(
                        "  {:<8} p(positive) {:.3}  {}",
                        m.gold.as_str(),
                        m.p_positive,
                        dongcha::reply::clip(&m.text, 70)
                    );
                }
                if let (Some(a), Some(path)) = (&e.audit, &audit) {
                    println!(
                        "\naudit {} ({} of its {} texts are in this file with its labels):",
                        path.display(),
                        a.found,
                        a.audited
                    );
                    for g in &a.groups {
                        println!(
                            "  {:<8} {:<40} {:>4} texts, head right on {:>4} ({:.3})",
                            g.sample,
                            g.agreement.describe(),
                            g.texts,
                            g.right,
                            g.right as f64 / g.texts.max(1) as f64
                        );
                    }
                }
            }
            Ok(())
        }
    }
}
