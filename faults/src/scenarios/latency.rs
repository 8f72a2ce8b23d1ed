//! 200 ms added each way (a delaying proxy in front of the platform: this kernel has no
//! `tc netem`): the rate stored against the same load without the delay, nothing lost.

use std::time::Duration;

use anyhow::Result;
use edgeway_testkit::delay::DelayProxy;

use super::loss::{lag, stored_rate};
use super::{audit, ensure_clean, settle, wait, Ctx, Outcome};
use crate::procs::{Platform, Sidecar};

const DEVICES: u32 = 100;
const INTERVAL_MS: u64 = 20;
const DELAY: Duration = Duration::from_millis(200);

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let platform = Platform::start(&ctx.lab, &ctx.bins, &ctx.files, "latency").await?;
    let proxy = DelayProxy::start(ctx.alwayson(), DELAY).await?;
    let mut spec = ctx.fleet(DEVICES, INTERVAL_MS);
    spec.platform = proxy.addr;
    let sidecar = Sidecar::start(&ctx.bins, &ctx.files, &spec, "latency").await?;
    let connect = wait(
        "the tunnel up through the delay",
        Duration::from_secs(60),
        || sidecar.up(),
    )
    .await?;
    wait("values stored", Duration::from_secs(30), || async {
        Ok(platform.history("dev-0").await?.len() >= 20)
    })
    .await?;
    let delayed = stored_rate(&platform, Duration::from_secs(20)).await?;
    let lag = lag(&platform, &sidecar).await?;
    settle(&platform, &sidecar, DEVICES).await?;
    let a = audit(&platform, DEVICES).await?;
    ensure_clean(&a)?;
    let (_, dropped) = platform.stats().await?;
    Ok(Outcome {
        fault: format!("{} ms added each way for 20 s", DELAY.as_millis()),
        audit: Some(a),
        resends_dropped: dropped,
        detect: None,
        recover: None,
        note: format!(
            "stored {delayed:.0}/s (5,000/s offered); dev-0 {lag} behind; connect + bind took {connect:.1?}"
        ),
    })
}
