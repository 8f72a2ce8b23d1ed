//! `edgeway-sidecar`: runs the gateway sidecar from one config file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use edgeway_sidecar::config::SidecarConfig;

/// Command line of the sidecar.
#[derive(Parser, Debug)]
#[command(name = "edgeway-sidecar", version, about = "Edgeway gateway sidecar")]
struct Cli {
    /// Path of the sidecar config (YAML or JSON).
    #[arg(long, env = "EDGEWAY_CONFIG")]
    config: PathBuf,
    /// Validate the config and the files it names (certs, credentials, Lua), then exit.
    #[arg(long)]
    check: bool,
}

/// How long the process waits at exit for work still on the blocking pool. A Lua call stuck in
/// C code (a backtracking pattern) cannot be interrupted; without a bound the runtime's drop
/// waited for it and SIGTERM was ignored for 25 s and more.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// mimalloc rather than glibc's malloc: glibc's malloc and free were ~15 % of the CPU of a Lua
/// service call returning an InfoTable (perf, `bench/run.sh lua`); see docs/performance.md §2.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edgeway-sidecar: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(run());
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let config = match SidecarConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edgeway-sidecar: invalid config: {e}");
            return ExitCode::from(2);
        }
    };
    edgeway_runtime::logging::init(&config.logging);
    let running = match edgeway_sidecar::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("edgeway-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!("config OK");
        running.shutdown().await;
        return ExitCode::SUCCESS;
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}

/// Waits for Ctrl-C or SIGTERM (what Kubernetes sends).
async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
