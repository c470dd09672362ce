//! `dongcha serve --fine-tune`: the service answers at once with the quick sentiment head (trained over
//! the encoder's own vectors in about two minutes) while a background process fine-tunes the encoder's
//! top layers (`dongcha train sentiment`, about 25 minutes on 2 cores), then another labels the reviews
//! again (`dongcha enrich`). Answers switch to the new labels when the refresher sees the store's new
//! data version, as for any other process's enrichment.
//!
//! Both processes run at the lowest CPU priority (questions keep theirs), die with the server, and run
//! in one `dongcha serve` at a time (a lease, when several share a store). Where the job stands is in
//! `/healthz` (`jobs`) and the log; the processes' own output goes to `<data dir>/fine-tune.log`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use dongcha::app::App;
use dongcha::config::Config;
use tokio::sync::watch;

/// The job's name in `/healthz`.
pub const JOB: &str = "sentiment fine-tune";

/// How the server was started: the global options the background commands must repeat.
pub struct Invocation {
    /// `--config FILE` / `--data-dir DIR` as given (the environment and working folder are inherited).
    pub global: Vec<OsString>,
    /// Extra arguments for `dongcha train sentiment` (after `--` on the command line).
    pub train_args: Vec<String>,
}

/// Starts the job: fine-tune and relabel when the head is the quick one and memory allows; relabel
/// only when the head is fine-tuned but some texts still carry other labels; nothing when there is no
/// head or nothing to do (each said in `/healthz` and the log).
pub fn spawn(
    app: &Arc<App>,
    cfg: &Config,
    how: Invocation,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (app, cfg) = (app.clone(), cfg.clone());
    tokio::spawn(async move {
        let how = Arc::new(how);
        let out = app
            .while_leased("sentiment:fine-tune", stop, |halt| {
                let (app, cfg, how) = (app.clone(), cfg.clone(), how.clone());
                async move { run(&app, &cfg, &how, halt).await }
            })
            .await;
        if let Some(Err(e)) = out {
            app.set_job(JOB, format!("failed: {e}"));
        }
    })
}

async fn run(
    app: &App,
    cfg: &Config,
    how: &Invocation,
    mut halt: watch::Receiver<bool>,
) -> Result<(), String> {
    // Decided again under the lease: another process may have fine-tuned meanwhile.
    let tuned = match tokio::task::block_in_place(|| dongcha::heads::sentiment_head(cfg)) {
        Ok(h) => h.meta.branch_layers > 0,
        Err(e) => {
            app.set_job(JOB, format!("skipped: {e}"));
            return Ok(());
        }
    };
    let started = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
    let log_path = cfg.data_dir().join("fine-tune.log");
    if tuned {
        // Fine-tuned already; its labels may not all be written (a relabelling stopped with its
        // server): finish them.
        let pending = dongcha::enrich::pending(cfg, &app.store)
            .await
            .map_err(|e| format!("counting the texts to label: {e}"))?;
        if pending > 0 {
            app.set_job(
                JOB,
                format!(
                    "running since {started}: labelling {pending} texts with the fine-tuned head"
                ),
            );
            relabel(app, how, &log_path, &mut halt).await?;
            return done(app, cfg, false);
        }
        return done(app, cfg, true);
    }
    if let Err(e) = dongcha::heads::fine_tune_fits(cfg) {
        app.set_job(JOB, format!("skipped: {e}; the quick head stays"));
        return Ok(());
    }
    app.set_job(
        JOB,
        format!(
            "running since {started}: training (log: {})",
            log_path.display()
        ),
    );
    let mut train = vec!["train".to_string(), "sentiment".into()];
    train.extend(how.train_args.iter().cloned());
    step(how, &train, &log_path, &mut halt).await?;
    app.set_job(
        JOB,
        format!("running since {started}: labelling the reviews with the fine-tuned head"),
    );
    relabel(app, how, &log_path, &mut halt).await?;
    done(app, cfg, false)
}

/// `dongcha enrich` in the background, then the new labels taken up at once (rather than at the
/// refresher's next look).
async fn relabel(
    app: &App,
    how: &Invocation,
    log_path: &PathBuf,
    halt: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    step(how, &["enrich".to_string()], log_path, halt).await?;
    if let Err(e) = app.refresh_if_changed().await {
        tracing::warn!("taking up the new labels: {e}");
    }
    Ok(())
}

/// Says the job is done; `already`: there was nothing to do.
fn done(app: &App, cfg: &Config, already: bool) -> Result<(), String> {
    let head = tokio::task::block_in_place(|| dongcha::heads::sentiment_head(cfg))
        .map(|h| h.meta.version)
        .unwrap_or_default();
    app.set_job(
        JOB,
        if already {
            format!("done: fine-tuned already, every text labelled by {head}")
        } else {
            format!(
                "done at {}: reviews labelled by {head}",
                chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
            )
        },
    );
    Ok(())
}

/// Runs `dongcha <global> <args>` at the lowest priority, its output appended to the log; an error
/// names the command, its exit status and the log's last line.
async fn step(
    how: &Invocation,
    args: &[String],
    log_path: &PathBuf,
    halt: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let what = format!("dongcha {}", args.join(" "));
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    // The program this server runs, even when its file has been replaced or removed since it started
    // (a rebuild or an upgrade while serving): the file's path then names another program or none
    // ("No such file or directory", which once failed the labelling after a rebuild mid-training).
    #[cfg(target_os = "linux")]
    let program = PathBuf::from("/proc/self/exe");
    #[cfg(not(target_os = "linux"))]
    let program = exe.clone();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut cmd = std::process::Command::new(program);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // What `ps` shows: the program's name, not /proc/self/exe.
        cmd.arg0(&exe);
    }
    cmd.args(&how.global)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    #[cfg(target_os = "linux")]
    // SAFETY: between fork and exec only async-signal-safe system calls, on the child's own state.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            // The lowest priority: questions keep the CPU they need.
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
            // Ended with the server, even when it is killed. The signal comes when the *thread* that
            // started the child ends: the thread below waits for the child, so it lives as long.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || match cmd.spawn() {
        Err(e) => {
            let _ = started_tx.send(Err(e));
        }
        Ok(mut child) => {
            let _ = started_tx.send(Ok(child.id()));
            let _ = done_tx.send(child.wait());
        }
    });
    let pid = started
        .await
        .map_err(|_| format!("{what}: not started"))?
        .map_err(|e| format!("{what}: {e}"))?;
    tracing::info!(pid, "{what}: started in the background");
    tokio::pin!(done);
    let status = tokio::select! {
        s = &mut done => Some(s),
        _ = async { halt.wait_for(|h| *h).await.is_ok() } => None,
    };
    let Some(status) = status else {
        // SAFETY: a signal to our own child, which is not reaped before `done` (it waits for it).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
        let _ = done.await;
        return Err(format!("{what}: stopped with the server"));
    };
    let status = status
        .map_err(|_| format!("{what}: lost"))?
        .map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let last = std::fs::read_to_string(log_path)
        .ok()
        .and_then(|s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_default();
    Err(format!("{what}: {status}: {last}"))
}
