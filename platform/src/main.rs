//! `edgeway-platform`: runs the reference platform from a config file until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use edgeway_platform::config::PlatformConfig;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "edgeway-platform",
    version,
    about = "Edgeway reference AlwaysOn platform"
)]
struct Args {
    /// Config file (YAML).
    #[arg(short, long, env = "EDGEWAY_PLATFORM_CONFIG")]
    config: PathBuf,
    /// Validate the config (and the files it names) and exit.
    #[arg(long)]
    check: bool,
}

/// An ephemeral loopback address, so `--check` binds nothing that is in use.
fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// mimalloc, as the sidecar and the operator: one allocator for the three binaries.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match PlatformConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edgeway-platform: {e}");
            return ExitCode::from(2);
        }
    };
    edgeway_runtime::logging::init(&config.logging);
    if args.check {
        // Loading TLS material and key files is part of the check.
        let running = match edgeway_platform::start(PlatformConfig {
            listen: loopback(),
            rest: edgeway_platform::config::RestConfig {
                listen: loopback(),
                ..config.rest.clone()
            },
            admin: edgeway_platform::config::AdminConfig { listen: loopback() },
            ..config
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("edgeway-platform: {e}");
                return ExitCode::from(2);
            }
        };
        running.shutdown().await;
        println!("config ok");
        return ExitCode::SUCCESS;
    }
    let running = match edgeway_platform::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("edgeway-platform: {e}");
            return ExitCode::from(1);
        }
    };
    terminated().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}
