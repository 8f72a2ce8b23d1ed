//! The platform SIGKILLed with batches in flight: its AlwaysOn port stops taking packets (the
//! batches stay in flight), what it stored is read, it is killed and a new one starts at the
//! same address. What the old one stored plus what the new one stores must have no gap; values
//! both hold are resends whose acknowledgement died with the old platform (at-least-once).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use super::{devices, settle, start_both, wait, Ctx, Outcome};
use crate::check::Audit;
use crate::procs::{Platform, ALWAYSON_PORT};

const DEVICES: u32 = 50;

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let (mut old, sidecar) = start_both(ctx, &ctx.fleet(DEVICES, 20), "platform-kill-1").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ctx.lab.block_port(ALWAYSON_PORT)?;
    // What reached the platform's socket before the block is stored within moments.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut before = Vec::new();
    for d in devices(DEVICES) {
        before.push(old.history(&d).await?);
    }
    old.kill();
    ctx.lab.heal()?;
    let t1 = Instant::now();
    let new = Platform::start(&ctx.lab, &ctx.bins, &ctx.files, "platform-kill-2").await?;
    wait(
        "values at the new platform",
        Duration::from_secs(60),
        || async { Ok(!new.history("dev-0").await?.is_empty()) },
    )
    .await?;
    let recover = t1.elapsed();
    settle(&new, &sidecar, DEVICES).await?;
    let mut total = Audit::default();
    let mut resent = 0;
    for (d, old_values) in devices(DEVICES).zip(&before) {
        let new_values = new.history(&d).await?;
        let new_audit = Audit::of(&new_values);
        ensure!(
            new_audit.duplicates == 0 && new_audit.out_of_order == 0 && new_audit.lost == 0,
            "{d}: the new platform's own store is not clean: {new_audit:?}"
        );
        let old_last = old_values.last().copied().unwrap_or(-1);
        resent += new_values.iter().filter(|v| **v <= old_last).count();
        let mut union = old_values.clone();
        union.extend(new_values.iter().filter(|v| **v > old_last));
        total.add(&Audit::of(&union));
    }
    ensure!(
        total.lost == 0,
        "{} values neither platform stored",
        total.lost
    );
    Ok(Outcome {
        fault: "platform SIGKILL with batches in flight, a new one at the same address".into(),
        audit: Some(total),
        resends_dropped: 0,
        detect: None,
        recover: Some(recover),
        note: format!(
            "{resent} values stored by both (the old platform's acknowledgements died with it); recovery includes the new platform's start"
        ),
    })
}
