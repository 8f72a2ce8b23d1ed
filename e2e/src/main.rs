//! Edgeway's end-to-end suite: installs the Helm chart into a real cluster, applies the example
//! gateways and checks what issue 5 lists, in order, printing each scenario's time. On a
//! failure it prints pods, events and logs of the namespaces involved and exits non-zero.
//!
//! The cluster comes from `e2e/run.sh` (local Debian-built cluster, or kind); this binary only
//! needs a kubeconfig, a way to reach Services, and a helm command.

mod access;
mod cluster;
mod http;
mod import;
mod monitoring;
mod mqtt;
mod reach;
mod scenarios;

use anyhow::Result;
use clap::Parser;
use scenarios::{Settings, Suite, GW_NS};
use std::path::PathBuf;
use std::time::Instant;

/// Command line.
#[derive(Parser)]
#[command(about = "Edgeway end-to-end suite (see e2e/README.md)")]
struct Args {
    /// Kubeconfig of the cluster under test.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: String,
    /// How Services are reached: direct (cluster IPs routable here) or port-forward.
    #[arg(long, value_enum, default_value = "direct")]
    access: reach::Access,
    /// The helm command, words separated by spaces (e.g. "python3 e2e/helm.py").
    #[arg(long, default_value = "helm")]
    helm: String,
    /// Release name.
    #[arg(long, default_value = "edgeway")]
    release: String,
    /// Release namespace.
    #[arg(long, default_value = "edgeway")]
    namespace: String,
    /// Image repository the chart installs.
    #[arg(long, default_value = "docker.io/edgeway/edgeway")]
    image: String,
    /// Image tag the chart installs (the image must be on the node already).
    #[arg(long, default_value = "e2e")]
    tag: String,
    /// Mosquitto image of the MQTT scenario (on the node already; its binary at
    /// /usr/sbin/mosquitto).
    #[arg(long, default_value = "edgeway.local/mosquitto:e2e")]
    mosquitto_image: String,
    /// A Prometheus binary for the monitoring scenario, run on this machine (which must reach
    /// pod IPs: the local cluster); without it the scenario is skipped.
    #[arg(long)]
    prometheus: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e FAILED: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let client = cluster::client(&args.kubeconfig).await?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let suite = Suite {
        reach: reach::Reach::new(args.access, client.clone(), args.kubeconfig.clone()),
        client,
        s: Settings {
            repo,
            kubeconfig: args.kubeconfig,
            release: args.release,
            namespace: args.namespace,
            helm: args.helm.split_whitespace().map(str::to_owned).collect(),
            image: (args.image, args.tag),
            mosquitto_image: args.mosquitto_image,
            prometheus: args.prometheus,
        },
    };
    let start = Instant::now();
    macro_rules! scenario {
        ($name:literal, $call:expr) => {{
            let t = Instant::now();
            println!("--- {}", $name);
            if let Err(e) = $call.await {
                eprintln!(
                    "FAIL {} after {:.1}s: {e:#}",
                    $name,
                    t.elapsed().as_secs_f64()
                );
                cluster::diagnose(&suite.client, &[suite.s.namespace.as_str(), GW_NS]).await;
                return Err(e.context($name));
            }
            println!("PASS {} ({:.1}s)", $name, t.elapsed().as_secs_f64());
        }};
    }
    scenario!("install the chart with the platform", suite.install());
    scenario!("helm test", suite.helm_test());
    scenario!("apply the example gateways", suite.apply_gateways());
    scenario!("gateways Ready", suite.gateways_ready());
    scenario!(
        "platform shows every device, fresh",
        suite.platform_sees_everything()
    );
    scenario!(
        "Prometheus scrapes the fleet through the chart's monitors; alerts, dashboard answer",
        suite.monitoring()
    );
    scenario!(
        "service through the platform runs Lua in the pod",
        suite.service_through_platform()
    );
    scenario!("gateway HTTPS refuses and accepts", suite.gateway_auth());
    scenario!(
        "certificate renewal, tunnel stays up",
        suite.certificate_renewal()
    );
    scenario!(
        "platform pod deleted: reconnect, nothing lost",
        suite.platform_restart()
    );
    scenario!(
        "pinned device and authorization rules from the manifest",
        suite.trust_and_access()
    );
    scenario!(
        "rotated basic-auth Secret applies without a restart",
        suite.rotated_credentials()
    );
    scenario!(
        "CA rotation: old-CA-only devices verify through the overlap",
        suite.ca_rotation()
    );
    scenario!(
        "an imported EMS + LSR installation runs",
        suite.imported_gateway()
    );
    scenario!(
        "an MQTT gateway publishes to Mosquitto; a refused login is a condition",
        suite.mqtt_gateway()
    );
    scenario!(
        "EdgeGateway deleted: owned objects removed",
        suite.delete_gateway()
    );
    scenario!("chart uninstalled cleanly", suite.uninstall());
    println!(
        "e2e passed: 17 scenarios in {:.0}s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
