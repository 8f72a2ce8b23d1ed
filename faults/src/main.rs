//! Edgeway's fault-injection suite (issue 22): the real sidecar and platform binaries, the
//! platform in a network namespace this suite makes, faults injected below the processes —
//! iptables drops and loss inside the namespace, a delaying TCP proxy, SIGKILL, a volume that
//! fills — and after each, the platform's store audited: nothing lost, nothing stored twice.
//!
//! # Layout
//! - [`net`]: the namespace, its veth pair and its iptables rules.
//! - [`procs`]: the platform and sidecar processes, their configs, metrics and stores.
//! - [`check`]: the audit of stored counter values (pure).
//! - [`cluster`]: a Kubernetes 1.20 control plane and operator processes, for the operator's
//!   faults.
//! - [`scenarios`]: one file per fault.
//!
//! Needs root (namespaces, iptables, tmpfs). Prints one line per scenario and a table at the
//! end (the figures in docs/reliability.md come from it); exits non-zero if any failed.

mod check;
mod cluster;
mod net;
mod procs;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;

use procs::{Binaries, Files};
use scenarios::{Ctx, Outcome};

/// Command line.
#[derive(Parser)]
#[command(about = "Edgeway fault-injection suite (needs root)")]
struct Args {
    /// The platform binary.
    #[arg(long, default_value = "target/debug/edgeway-platform")]
    platform: PathBuf,
    /// The sidecar binary.
    #[arg(long, default_value = "target/debug/edgeway-sidecar")]
    sidecar: PathBuf,
    /// The operator binary.
    #[arg(long, default_value = "target/debug/edgeway-operator")]
    operator: PathBuf,
    /// Run only these scenarios (by name).
    #[arg(long)]
    only: Vec<String>,
    /// Where configs and logs go (kept on failure).
    #[arg(long, default_value = "target/faults")]
    dir: PathBuf,
}

const SCENARIOS: [&str; 8] = [
    "half_open",
    "loss",
    "latency",
    "platform_kill",
    "sidecar_kill",
    "full_volume",
    "apiserver_restart",
    "leader_kill",
];

async fn scenario(name: &str, ctx: &Ctx) -> Result<Outcome> {
    match name {
        "half_open" => scenarios::half_open::run(ctx).await,
        "loss" => scenarios::loss::run(ctx).await,
        "latency" => scenarios::latency::run(ctx).await,
        "platform_kill" => scenarios::platform_kill::run(ctx).await,
        "sidecar_kill" => scenarios::sidecar_kill::run(ctx).await,
        "full_volume" => scenarios::full_volume::run(ctx).await,
        "apiserver_restart" => scenarios::apiserver_restart::run(ctx).await,
        "leader_kill" => scenarios::leader_kill::run(ctx).await,
        other => anyhow::bail!("no scenario {other:?} (known: {SCENARIOS:?})"),
    }
}

/// No scenario may take longer: a hang is a failure, not a stuck CI job.
const SCENARIO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("faults: {e}");
            return ExitCode::FAILURE;
        }
    };
    // On a signal the run is dropped: processes killed, namespace and mounts removed.
    let result = tokio::select! {
        r = run(args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = term.recv() => Err(anyhow::anyhow!("terminated")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("faults: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    let bins = Binaries {
        platform: std::fs::canonicalize(&args.platform)?,
        sidecar: std::fs::canonicalize(&args.sidecar)?,
        operator: std::fs::canonicalize(&args.operator)?,
    };
    let _ = std::fs::remove_dir_all(&args.dir);
    let lab = net::Lab::create()?;
    let files = Files::write(&std::path::absolute(&args.dir)?, lab.ip)?;
    let ctx = Ctx { bins, lab, files };
    let names: Vec<&str> = if args.only.is_empty() {
        SCENARIOS.to_vec()
    } else {
        args.only.iter().map(String::as_str).collect()
    };
    let mut rows = Vec::new();
    let mut ok = true;
    for name in names {
        println!("== {name}");
        let t0 = Instant::now();
        let result = match tokio::time::timeout(SCENARIO_TIMEOUT, scenario(name, &ctx)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "did not finish within {SCENARIO_TIMEOUT:?}"
            )),
        };
        // Whatever a scenario left, the next starts on a clean link.
        let _ = ctx.lab.heal();
        let secs = t0.elapsed().as_secs();
        match result {
            Ok(o) => {
                println!("   passed in {secs}s: {}", o.note);
                rows.push(row(name, secs, &o));
            }
            Err(e) => {
                ok = false;
                println!(
                    "   FAILED after {secs}s: {e:#} (logs in {})",
                    ctx.files.dir.display()
                );
                rows.push(format!("| {name} | FAILED | {e:#} | | | | | | |"));
            }
        }
    }
    println!("\n| scenario | result | fault | stored | lost | stored twice | resends dropped | detected | recovered | notes |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(ok)
}

fn row(name: &str, secs: u64, o: &Outcome) -> String {
    let t = |d: Option<std::time::Duration>| {
        d.map(|d| format!("{:.2}s", d.as_secs_f64()))
            .unwrap_or("-".into())
    };
    let a =
        |f: fn(&check::Audit) -> usize| o.audit.as_ref().map_or("-".into(), |x| f(x).to_string());
    format!(
        "| {name} | passed ({secs}s) | {} | {} | {} | {} | {} | {} | {} | {} |",
        o.fault,
        a(|x| x.stored),
        a(|x| x.lost),
        a(|x| x.duplicates),
        o.resends_dropped,
        t(o.detect),
        t(o.recover),
        o.note
    )
}
