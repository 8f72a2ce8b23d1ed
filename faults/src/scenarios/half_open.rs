//! Half-open tunnel: every packet between sidecar and platform silently dropped, both ways,
//! as when a NAT or firewall on the path forgets the connection. The sidecar must notice
//! within its keep-alive deadline, reconnect once the path is back, and deliver the backlog
//! with nothing lost and nothing stored twice.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use super::{audit, ensure_clean, settle, start_both, wait, Ctx, Outcome};
use crate::procs::{KEEP_ALIVE, KEEP_ALIVE_TIMEOUT};

const DEVICES: u32 = 20;

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let (platform, sidecar) = start_both(ctx, &ctx.fleet(DEVICES, 20), "half-open").await?;
    ctx.lab.blackhole()?;
    let detect = wait(
        "the sidecar to declare the silent tunnel dead",
        Duration::from_secs(60),
        || async { Ok(!sidecar.up().await?) },
    )
    .await?;
    let deadline = KEEP_ALIVE + KEEP_ALIVE_TIMEOUT;
    // The ping goes out after KEEP_ALIVE without traffic from the platform; metric polling
    // adds up to 50 ms.
    ensure!(
        detect <= deadline + Duration::from_secs(1),
        "detected after {detect:?}, the keep-alive deadline is {deadline:?}"
    );
    // A backlog builds while reconnects fail.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ctx.lab.heal()?;
    let t1 = Instant::now();
    wait("the tunnel back up", Duration::from_secs(120), || {
        sidecar.up()
    })
    .await?;
    let recover = t1.elapsed();
    settle(&platform, &sidecar, DEVICES).await?;
    let a = audit(&platform, DEVICES).await?;
    ensure_clean(&a)?;
    let (_, dropped) = platform.stats().await?;
    Ok(Outcome {
        fault: "all packets dropped both ways for the keep-alive deadline + 3 s".into(),
        audit: Some(a),
        resends_dropped: dropped,
        detect: Some(detect),
        recover: Some(recover),
        note: format!("keep-alive deadline {deadline:?}"),
    })
}
