//! `edgeway-operator`: `run` the controller, or print the `crd`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use edgeway_operator::context::{self, Settings};
use edgeway_operator::controller;
use edgeway_operator::leader::{self, LeaderConfig};
use edgeway_operator::metrics::{self, Metrics};
use tracing_subscriber::EnvFilter;

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "edgeway-operator",
    version,
    about = "Edgeway Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller.
    Run(RunArgs),
    /// Run EdgeGateway manifests on this machine without Kubernetes: issues certificates into a
    /// state directory, starts the reference platform (AlwaysOn gateways) or an embedded MQTT
    /// broker (MQTT gateways) and the gateways, shows a live view.
    Local(LocalArgs),
    /// Convert an existing installation's configuration into manifests and a report.
    #[command(subcommand)]
    Import(ImportSource),
    /// Print the EdgeGateway CustomResourceDefinition as YAML.
    Crd {
        /// Include CEL validation rules (Kubernetes 1.25+ only; 1.20 refuses them).
        #[arg(long)]
        cel: bool,
        /// Print the field reference as Markdown instead (docs/crd-reference.md).
        #[arg(long, conflicts_with = "cel")]
        markdown: bool,
    },
}

/// What `import` reads.
#[derive(Subcommand, Debug)]
enum ImportSource {
    /// An Edge MicroServer `config.json`, with the Lua Script Resource's `config.lua` and
    /// templates: writes an EdgeGateway, its ConfigMaps and Secrets, and `import-report.md`
    /// (every input key: mapped, not needed, or not supported and what to do).
    Ems(ImportArgs),
}

/// Options of `import ems`.
#[derive(clap::Args, Debug)]
struct ImportArgs {
    /// The EMS `config.json` (JSON with comments).
    config_json: std::path::PathBuf,
    /// The LSR `config.lua`.
    #[arg(long = "lua")]
    config_lua: Option<std::path::PathBuf>,
    /// Directory of the LSR templates (`<template>.lua`); `templates/` beside `config.lua`.
    #[arg(long)]
    templates: Option<std::path::PathBuf>,
    /// Directory of the LSR's custom scripts (reported: they do not run in the sidecar).
    #[arg(long)]
    scripts: Option<std::path::PathBuf>,
    /// Gateway name; from `auto_bind`'s gateway entry by default.
    #[arg(long)]
    name: Option<String>,
    /// Namespace written into the manifests.
    #[arg(long)]
    namespace: Option<String>,
    /// Output directory; must not exist or be empty.
    #[arg(long, default_value = "edgeway-import")]
    out: std::path::PathBuf,
    /// Carry insecure settings (`certificates.validate: false`) over instead of refusing them.
    #[arg(long)]
    allow_insecure: bool,
}

/// Options of `local`.
#[derive(clap::Args, Debug)]
struct LocalArgs {
    /// Manifest files: EdgeGateways and the Secrets and ConfigMaps they reference.
    #[arg(required = true)]
    files: Vec<std::path::PathBuf>,
    /// State directory (CA, certificates, generated credentials, queues); reused across runs.
    #[arg(long)]
    state_dir: Option<std::path::PathBuf>,
    /// Connect every gateway to this existing platform (wss://...) or MQTT broker (mqtts://...)
    /// instead of starting the reference platform or the embedded broker.
    #[arg(long)]
    platform: Option<String>,
    /// Port of the reference platform's REST API (another free port if taken).
    #[arg(long, default_value_t = 8080)]
    rest_port: u16,
    /// Serve gateways on any free ports (their spec ports are tried first otherwise).
    #[arg(long)]
    any_ports: bool,
    /// Exit once every tunnel is up (failing after this many seconds) instead of running until
    /// Ctrl-C: a smoke check.
    #[arg(long)]
    until_connected: Option<u64>,
}

/// Options of `run`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Namespace to watch; repeat for several; all namespaces when absent.
    #[arg(long = "namespace", short = 'n')]
    namespaces: Vec<String>,
    /// Sidecar image for gateways that do not set spec.pod.image.
    #[arg(long, env = "EDGEWAY_SIDECAR_IMAGE", default_value_t = Settings::default().sidecar_image)]
    sidecar_image: String,
    /// Cluster DNS domain used in server certificate names.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Lifetime of each namespace CA, in days (rotated at 2/3).
    #[arg(long, default_value_t = 3650)]
    ca_days: u32,
    /// Days a rotated CA's successor is published in ca.crt before it signs server
    /// certificates (devices that trust only the old CA keep working meanwhile); 0: at once.
    #[arg(long, default_value_t = 30)]
    ca_overlap_days: u32,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader through a Lease so several replicas are safe.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "edgeway-operator")]
    lease_name: String,
    /// Identity in the Lease; the pod name in a cluster.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Image prefix a gateway's `spec.pod.image` / `spec.upstream.image` may use; repeat for
    /// several. None: any image (a single-tenant cluster).
    #[arg(long = "allowed-image")]
    allowed_images: Vec<String>,
}

/// mimalloc rather than glibc's malloc: with glibc the operator's RSS was 8× its live heap
/// (heaptrack, 1,000 gateways: 42 MiB peak heap, 331 MiB RSS), freed watch and apply
/// buffers staying in fragmented arenas; at 10,000 gateways 2.5 GiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Local(args) => {
            // rumqttd (the embedded broker) logs every client's disconnect as an error; the
            // live view shows what matters. RUST_LOG brings them back.
            let filter = EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,rumqttd=off"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .try_init();
            let opts = edgeway_operator::local::LocalOptions {
                files: args.files,
                state_dir: args
                    .state_dir
                    .unwrap_or_else(edgeway_operator::local::default_state_dir),
                platform: args.platform,
                rest_port: args.rest_port,
                any_ports: args.any_ports,
                until_connected: args.until_connected.map(std::time::Duration::from_secs),
            };
            if let Err(e) = edgeway_operator::local::run(opts).await {
                eprintln!("edgeway-operator local: {e}");
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Import(ImportSource::Ems(args)) => {
            use edgeway_operator::import;
            let inputs = import::Inputs {
                config_json: args.config_json,
                config_lua: args.config_lua,
                templates: args.templates,
                scripts: args.scripts,
                name: args.name,
                namespace: args.namespace,
                allow_insecure: args.allow_insecure,
            };
            let draft = import::import(&inputs)?;
            let files = import::write(&draft, &args.out)?;
            for f in &files {
                println!("wrote {}", f.display());
            }
            let actions = draft.report.actions.len();
            if actions > 0 {
                println!("{actions} action(s) before applying: see import-report.md");
            }
            Ok(())
        }
        Command::Crd { markdown: true, .. } => {
            print!("{}", edgeway_operator::crd_docs::markdown());
            Ok(())
        }
        Command::Crd { cel, .. } => {
            print!("{}", edgeway_operator::crd_yaml(cel)?);
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client config (in-cluster or KUBECONFIG)")?;
    let info = client
        .apiserver_version()
        .await
        .context("reading the apiserver version")?;
    let version = edgeway_operator::parse_version(&info.major, &info.minor)
        .with_context(|| format!("unreadable apiserver version {}.{}", info.major, info.minor))?;
    if version < edgeway_operator::MIN_KUBERNETES {
        bail!(
            "Kubernetes {}.{} is older than the minimum 1.20",
            version.0,
            version.1
        );
    }
    tracing::info!(version = %info.git_version, "apiserver");

    let metrics = Arc::new(Metrics::new());
    let server = tokio::spawn(metrics::serve(args.metrics_addr, metrics.clone()));
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("edgeway-operator-{:08x}", rand::random::<u32>()));
    let settings = Settings {
        sidecar_image: args.sidecar_image,
        cluster_domain: args.cluster_domain,
        ca_lifetime: i64::from(args.ca_days) * 24 * 3600,
        ca_overlap: i64::from(args.ca_overlap_days) * 24 * 3600,
        allowed_images: args.allowed_images,
        disruption_api: controller::disruption_api(&client).await,
    };
    let ctx = context::context(
        client.clone(),
        metrics.clone(),
        settings,
        Some(identity.clone()),
    );

    let mut leadership = None;
    if args.leader_elect {
        // Standing by is healthy: a non-leader replica is ready to take over.
        metrics.set_ready(true);
        let config = LeaderConfig {
            namespace: args.lease_namespace,
            lease_name: args.lease_name,
            identity,
            duration_secs: 15,
            grace_secs: 5,
        };
        tracing::info!(lease = %config.lease_name, "waiting for leadership");
        leadership = Some(leader::acquire(client.clone(), &config).await?);
    }
    metrics.set_ready(true);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<&'static str>();
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let controller = tokio::spawn(controller::run(client, ctx, args.namespaces, shutdown));
    let lost = async {
        match leadership.as_mut() {
            Some(l) => l.lost().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => "signal",
        _ = terminate() => "signal",
        _ = lost => "leadership lost",
    };
    tracing::info!(reason = outcome, "stopping");
    let _ = stop_tx.send(outcome);
    let _ = controller.await;
    server.abort();
    if let Some(l) = leadership {
        l.release().await;
    }
    if outcome == "leadership lost" {
        bail!("leadership lost");
    }
    Ok(())
}

/// Resolves on SIGTERM (what Kubernetes sends).
async fn terminate() {
    #[cfg(unix)]
    if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        s.recv().await;
        return;
    }
    std::future::pending::<()>().await
}
