//! More than one `dongcha serve` on one store. Every process has an instance id and holds the lease
//! `instance:ID` while it runs (renewed by [`App::spawn_heartbeat`]); what only one process may do at a
//! time — long-poll a platform, send a platform's outbox and the replies of processes that are gone,
//! run the digest scheduler — runs under a named lease ([`App::while_leased`]): the holder renews it
//! every third of `[serve] lease_secs`, stops that work when it cannot, and another process takes it
//! over once it has expired. What every process may do at once (answer webhooks and HTTP requests) needs
//! no lease: an update is claimed in the same transaction as its reply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::App;
use crate::store::leases::instance_lease;

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A new instance id: 16 hex digits from the OS's random source.
pub(super) fn new_instance() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The name of the file in a state folder that names the `serve` process which claimed it last.
const INSTANCE_FILE: &str = "serve.instance";

/// A state folder claimed by this process: the exclusive lock on its instance file, held until drop (the
/// OS gives it up when the process dies, however it dies).
#[derive(Debug)]
pub struct FolderClaim {
    _file: std::fs::File,
}

impl App {
    /// Claims this process's state folder (`--data-dir`): an exclusive lock on its `serve.instance`
    /// file, which names the process that claimed it before. Getting the lock proves that process is
    /// gone, so its leases are given up at once: a `serve` restarted after a crash polls, sends what its
    /// predecessor stored but never sent, and schedules digests straight away instead of waiting
    /// `lease_secs` for those leases to expire. None (and nothing taken from anyone) when another
    /// running process holds the folder, or the file cannot be used.
    pub async fn claim_state_folder(&self) -> Option<FolderClaim> {
        use std::io::{Read, Seek, Write};
        let path = self.cfg.data_dir().join(INSTANCE_FILE);
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path);
        let mut file = match opened {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), "claiming the state folder: {e}");
                return None;
            }
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::info!(
                    path = %path.display(),
                    "another serve process runs on this state folder: its leases are left alone"
                );
                return None;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!(path = %path.display(), "locking the state folder: {e}");
                return None;
            }
        }
        let mut before = String::new();
        let _ = file.read_to_string(&mut before);
        let before = before.trim();
        if !before.is_empty() && before != self.instance {
            match self.lease_store.release_leases(before).await {
                Ok(()) => tracing::info!(
                    previous = before,
                    "the previous serve process of this state folder is gone: its leases are given up"
                ),
                Err(e) => tracing::warn!("giving up the previous process's leases: {e}"),
            }
        }
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", self.instance))
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), "writing the instance file: {e}");
        }
        Some(FolderClaim { _file: file })
    }

    /// How long a lease lasts without renewal (`[serve] lease_secs`).
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis((self.cfg.serve.lease_secs * 1000.0).max(300.0) as u64)
    }

    /// The leases this process holds now (its instance lease left out), sorted.
    pub fn leases_held(&self) -> Vec<String> {
        self.held
            .lock()
            .expect("leases lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Renews this process's `instance:` lease until `stop`, then gives up every lease it holds (the
    /// other processes take over at once instead of after `lease_secs`).
    pub fn spawn_heartbeat(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let app = self.clone();
        tokio::spawn(async move {
            let name = instance_lease(&app.instance);
            let ttl = app.lease_ttl();
            loop {
                if let Err(e) = app.lease_store.lease(&name, &app.instance, ttl).await {
                    tracing::warn!("renewing this process's lease: {e}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(ttl / 3) => {}
                    _ = stopped(&mut stop) => break,
                }
            }
        })
    }

    /// Gives up every lease this process holds (at the end of a clean stop).
    pub async fn release_leases(&self) {
        if let Err(e) = self.lease_store.release_leases(&self.instance).await {
            tracing::warn!("giving up leases: {e}");
        }
    }

    /// Runs `work` while this process holds the lease `name`, waiting for it while another process
    /// does. `work` gets a receiver that turns true when it must stop: `stop` turned true, or the lease
    /// could not be renewed (another process may hold it now). Returns what `work` returned when it
    /// ended on its own or at `stop`; when the lease was lost, waits to take it again.
    pub async fn while_leased<T, F, Fut>(
        &self,
        name: &str,
        mut stop: watch::Receiver<bool>,
        mut work: F,
    ) -> Option<T>
    where
        F: FnMut(watch::Receiver<bool>) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let ttl = self.lease_ttl();
        loop {
            if *stop.borrow() {
                return None;
            }
            match self.lease_store.lease(name, &self.instance, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    tokio::select! {
                        _ = tokio::time::sleep(ttl / 3) => continue,
                        _ = stopped(&mut stop) => return None,
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = name, "taking the lease: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(ttl / 3) => continue,
                        _ = stopped(&mut stop) => return None,
                    }
                }
            }
            tracing::info!(lease = name, instance = %self.instance, "this process took the lease");
            self.held
                .lock()
                .expect("leases lock")
                .insert(name.to_string());
            let (halt_tx, halt_rx) = watch::channel(false);
            let running = work(halt_rx);
            tokio::pin!(running);
            let mut renewed = Instant::now();
            let mut lost = false;
            let out = loop {
                tokio::select! {
                    out = &mut running => break Some(out),
                    _ = tokio::time::sleep(ttl / 3) => {
                        match self.lease_store.lease(name, &self.instance, ttl).await {
                            Ok(true) => renewed = Instant::now(),
                            Ok(false) => lost = true,
                            // Still ours until it expires; past that another process may have it.
                            Err(e) => {
                                tracing::warn!(lease = name, "renewing the lease: {e}");
                                lost = renewed.elapsed() + ttl / 3 >= ttl;
                            }
                        }
                        if lost {
                            tracing::warn!(lease = name, "lease lost: stopping its work");
                            let _ = halt_tx.send(true);
                            // What is in flight finishes.
                            running.as_mut().await;
                            break None;
                        }
                    }
                    _ = stopped(&mut stop) => {
                        let _ = halt_tx.send(true);
                        break Some(running.as_mut().await);
                    }
                }
            };
            self.held.lock().expect("leases lock").remove(name);
            if !lost {
                if let Err(e) = self.lease_store.release_lease(name, &self.instance).await {
                    tracing::warn!(lease = name, "giving up the lease: {e}");
                }
                return out;
            }
        }
    }
}
