//! 10 % packet loss each way for 20 s under a steady load: the rate stored during the loss
//! against the rate just before it, and nothing lost once the link is clean.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{audit, ensure_clean, settle, start_both, Ctx, Outcome};
use crate::procs::{Platform, Sidecar};

const DEVICES: u32 = 100;
/// 100 devices every 20 ms: 5,000 updates/s offered.
const INTERVAL_MS: u64 = 20;
const WINDOW: Duration = Duration::from_secs(20);

/// Updates stored per second over `window`.
pub async fn stored_rate(platform: &Platform, window: Duration) -> Result<f64> {
    let (before, _) = platform.stats().await?;
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let (after, _) = platform.stats().await?;
    Ok((after - before) as f64 / t0.elapsed().as_secs_f64())
}

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let (platform, sidecar) = start_both(ctx, &ctx.fleet(DEVICES, INTERVAL_MS), "loss").await?;
    let clean = stored_rate(&platform, Duration::from_secs(5)).await?;
    ctx.lab.loss(10)?;
    let lossy = stored_rate(&platform, WINDOW).await?;
    let lag = lag(&platform, &sidecar).await?;
    ctx.lab.heal()?;
    settle(&platform, &sidecar, DEVICES).await?;
    let a = audit(&platform, DEVICES).await?;
    ensure_clean(&a)?;
    let (_, dropped) = platform.stats().await?;
    Ok(Outcome {
        fault: format!("10 % of packets dropped each way for {}s", WINDOW.as_secs()),
        audit: Some(a),
        resends_dropped: dropped,
        detect: None,
        recover: None,
        note: format!(
            "stored {lossy:.0}/s under loss vs {clean:.0}/s clean ({:.2}x; 5,000/s offered); dev-0 {lag} behind at the end of the loss",
            lossy / clean
        ),
    })
}

/// How far the platform's dev-0 is behind the sidecar's, in updates.
pub async fn lag(platform: &Platform, sidecar: &Sidecar) -> Result<i64> {
    let now = sidecar.value("dev-0").await?;
    let stored = platform.latest("dev-0").await?.unwrap_or(0);
    Ok((now - stored).max(0))
}
