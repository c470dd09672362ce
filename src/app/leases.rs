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

impl App {
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
