//! The persisted queue's volume fills (a 256 KiB tmpfs) while the platform is away: the
//! sidecar says so (log line, metric), keeps running and keeps the updates in memory; when the
//! volume grows it writes them all, and once the platform is back every value arrives.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use super::{audit, ensure_clean, settle, wait, Ctx, Outcome};
use crate::net::run as sh;
use crate::procs::{Platform, Sidecar};

const DEVICES: u32 = 100;
const FAILING: &str = "edgeway_sidecar_tunnel_queue_write_failing";

/// A tmpfs mounted for the scenario, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs> {
        std::fs::create_dir_all(dir)?;
        sh(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir))?;
        Ok(Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) -> Result<()> {
        sh(Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0))
        .map(drop)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = sh(Command::new("umount").arg(&self.0));
    }
}

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let volume = Tmpfs::mount(&ctx.files.dir.join("queue-volume"), "256k")?;
    let mut spec = ctx.fleet(DEVICES, 20);
    spec.queue_dir = Some(volume.0.join("queue"));
    // The platform is not there yet: everything queues.
    let mut sidecar = Sidecar::start(&ctx.bins, &ctx.files, &spec, "full-volume").await?;
    let t0 = Instant::now();
    wait(
        "the queue to report a failing volume",
        Duration::from_secs(60),
        || async { Ok(sidecar.metric(FAILING).await? >= 1.0) },
    )
    .await?;
    let filled = t0.elapsed();
    ensure!(
        sidecar.log().contains("cannot write the offline queue"),
        "no log line names the failing queue"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(sidecar.alive(), "the sidecar died with its volume full");
    let held = sidecar.metric("edgeway_sidecar_tunnel_queue_depth").await?;
    sidecar.value("dev-0").await?;
    volume.resize("64m")?;
    let t1 = Instant::now();
    wait(
        "the queue writable again",
        Duration::from_secs(30),
        || async { Ok(sidecar.metric(FAILING).await? == 0.0) },
    )
    .await?;
    let recover = t1.elapsed();
    ensure!(
        sidecar.log().contains("offline queue writable again"),
        "no log line says the queue recovered"
    );
    let on_disk = std::fs::metadata(volume.0.join("queue/queue.log"))?.len();
    let platform = Platform::start(&ctx.lab, &ctx.bins, &ctx.files, "full-volume").await?;
    wait("the tunnel up", Duration::from_secs(30), || sidecar.up()).await?;
    settle(&platform, &sidecar, DEVICES).await?;
    let a = audit(&platform, DEVICES).await?;
    ensure_clean(&a)?;
    let errors = sidecar
        .metric("edgeway_sidecar_tunnel_queue_write_errors_total")
        .await?;
    Ok(Outcome {
        fault: "queue volume (tmpfs 256 KiB) full while the platform is away, then grown".into(),
        audit: Some(a),
        resends_dropped: platform.stats().await?.1,
        detect: Some(filled),
        recover: Some(recover),
        note: format!(
            "{held:.0} updates held while failing; {errors:.0} failed writes; {on_disk} bytes written on recovery"
        ),
    })
}
