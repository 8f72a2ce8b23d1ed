//! Leader election on a `coordination.k8s.io/v1` Lease, via `kube-lease-manager`.
//!
//! Only the holder of the Lease reconciles; the others wait. Each candidate writes the Lease with
//! its own field manager (`kube-lease-manager-<identity>`): server-side apply conflicts between
//! distinct managers are what makes taking a held lease impossible, so the Lease is the one object
//! not written by `edgeway-operator`.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the Lease lives and how long it is held.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Lease name.
    pub lease_name: String,
    /// This candidate's identity (the pod name in a cluster).
    pub identity: String,
    /// Seconds a lease stays valid without renewal.
    pub duration_secs: u64,
    /// Seconds before expiry the holder renews.
    pub grace_secs: u64,
}

/// A held (or lost) leadership; dropping it releases the Lease.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

/// Waits until this candidate holds the Lease.
pub async fn acquire(
    client: Client,
    config: &LeaderConfig,
) -> Result<Leadership, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration_secs)
        .with_grace(config.grace_secs)
        .build()
        .await?;
    let (mut state, task) = manager.watch().await;
    while !*state.borrow_and_update() {
        if state.changed().await.is_err() {
            // The manager task ended: report its error.
            return match task.await {
                Ok(Err(e)) => Err(e),
                _ => Err(LeaseManagerError::InconsistentState(
                    "lease manager stopped before acquiring".into(),
                )),
            };
        }
    }
    tracing::info!(lease = %config.lease_name, identity = %config.identity, "acquired leadership");
    Ok(Leadership { state, task })
}

impl Leadership {
    /// Resolves when leadership is lost (the Lease was taken over or could not be renewed).
    pub async fn lost(&mut self) {
        loop {
            if !*self.state.borrow_and_update() || self.state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Releases the Lease so another candidate can take over at once.
    pub async fn release(self) {
        let Leadership { state, task } = self;
        drop(state); // closing the channel makes the manager release and stop
        match task.await {
            Ok(Ok(_)) => tracing::info!("released leadership"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing leadership"),
            Err(e) => tracing::warn!(error = %e, "lease manager task"),
        }
    }
}
