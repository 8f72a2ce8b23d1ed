//! One file per fault. Each starts what it needs, injects its fault, lets the system recover,
//! and audits the platform's store; it fails (with the reason) when anything was lost or
//! repeated, or recovery did not happen.

pub mod apiserver_restart;
pub mod full_volume;
pub mod half_open;
pub mod latency;
pub mod leader_kill;
pub mod loss;
pub mod platform_kill;
pub mod sidecar_kill;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::check::Audit;
use crate::net::Lab;
use crate::procs::{Binaries, Files, Platform, Sidecar, SidecarSpec, ALWAYSON_PORT};

/// What every scenario gets.
pub struct Ctx {
    /// The binaries under test.
    pub bins: Binaries,
    /// The namespace the platform runs in.
    pub lab: Lab,
    /// PKI, keys and the run's directory.
    pub files: Files,
}

impl Ctx {
    /// The platform's AlwaysOn address in the lab.
    pub fn alwayson(&self) -> SocketAddr {
        SocketAddr::new(self.lab.ip, ALWAYSON_PORT)
    }

    /// A sidecar spec for `devices` devices updating every `interval_ms`, counting from 0.
    pub fn fleet(&self, devices: u32, interval_ms: u64) -> SidecarSpec {
        SidecarSpec {
            platform: self.alwayson(),
            devices,
            interval_ms,
            start: 0,
            queue_dir: None,
        }
    }
}

/// What a scenario measured.
pub struct Outcome {
    /// The fault, in a few words.
    pub fault: String,
    /// Every device's stored values, audited together (faults of the tunnel).
    pub audit: Option<Audit>,
    /// Resends the platform recognised and dropped.
    pub resends_dropped: u64,
    /// From the fault to the sidecar noticing it, where that is measured.
    pub detect: Option<Duration>,
    /// From the fault's end to the tunnel being up again.
    pub recover: Option<Duration>,
    /// Figures particular to the scenario (throughput, lag).
    pub note: String,
}

/// Polls `f` every 50 ms until it is true; the time it took, or an error naming `what`.
pub async fn wait<F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let t0 = Instant::now();
    loop {
        if matches!(f().await, Ok(true)) {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Device names of a fleet.
pub fn devices(n: u32) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("dev-{i}"))
}

/// Waits until the platform holds, for every device, at least the value the sidecar has now:
/// everything generated up to here has arrived (or is lost, which the audit then shows).
pub async fn settle(platform: &Platform, sidecar: &Sidecar, n: u32) -> Result<()> {
    for d in devices(n) {
        let target = sidecar.value(&d).await?;
        wait(
            &format!("{d} stored up to {target}"),
            Duration::from_secs(120),
            || async { Ok(platform.latest(&d).await?.is_some_and(|v| v >= target)) },
        )
        .await?;
    }
    Ok(())
}

/// Audits every device's stored values.
pub async fn audit(platform: &Platform, n: u32) -> Result<Audit> {
    let mut total = Audit::default();
    for d in devices(n) {
        total.add(&Audit::of(&platform.history(&d).await?));
    }
    Ok(total)
}

/// Fails unless nothing was lost, repeated or reordered.
pub fn ensure_clean(a: &Audit) -> Result<()> {
    if a.lost > 0 || a.duplicates > 0 || a.out_of_order > 0 {
        bail!(
            "the platform's store is not clean: {} lost (first: {:?}), {} stored twice, {} out of order ({} stored)",
            a.lost,
            a.missing,
            a.duplicates,
            a.out_of_order,
            a.stored
        );
    }
    Ok(())
}

/// Starts the platform and a sidecar and waits until values flow.
pub async fn start_both(ctx: &Ctx, spec: &SidecarSpec, tag: &str) -> Result<(Platform, Sidecar)> {
    let platform = Platform::start(&ctx.lab, &ctx.bins, &ctx.files, tag).await?;
    let sidecar = Sidecar::start(&ctx.bins, &ctx.files, spec, tag).await?;
    wait("the tunnel up", Duration::from_secs(30), || sidecar.up()).await?;
    wait("values stored", Duration::from_secs(30), || async {
        Ok(platform.history("dev-0").await?.len() >= 20)
    })
    .await?;
    Ok((platform, sidecar))
}
