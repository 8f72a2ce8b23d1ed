//! `mqtt`: updates/s through one MQTT connection — the sidecar's connector publishing from its
//! queue at QoS 1, an update counted when its PUBACK is back and it left the queue — against
//! `mosquitto_pub`'s own rate publishing the same payloads to the same topic at QoS 1, with the
//! same in-flight window, over the same TLS listener of one Mosquitto broker (started here on
//! 127.0.0.1). Rounds run interleaved (edgeway, mosquitto_pub, edgeway, ...); each ratio is the
//! median of the per-round ratios with its range.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use edgeway_protocol::basetype::{BaseType, Quality};
use edgeway_sidecar::tunnel::outbox::Update;

#[derive(clap::Args)]
pub struct Args {
    /// Directory holding `ca.crt`, `server.crt`, `server.key` (for localhost).
    #[arg(long)]
    certs: PathBuf,
    /// Working directory (broker config, payload file).
    #[arg(long)]
    dir: PathBuf,
    /// Interleaved rounds of each side.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Updates per round. Large, because `mosquitto_pub`'s run includes a fixed cost (start,
    /// TLS, the final wait) of about 0.4 s here: 100,000 updates read as 162 k/s, 300,000 as
    /// 396 k/s.
    #[arg(long, default_value_t = 500_000)]
    updates: usize,
}

/// QoS 1 publishes awaiting their PUBACK, on both sides (the connector's default).
const IN_FLIGHT: u16 = 100;
const TOPIC: &str = "edgeway/bench/properties/n";

struct Broker(std::process::Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn update(n: usize) -> Update {
    Update {
        thing: Arc::from("bench"),
        property: Arc::from("n"),
        base_type: BaseType::Number,
        value: serde_json::json!(n),
        time_ms: 1_700_000_000_000 + n as i64,
        quality: Quality::Good,
        event: false,
    }
}

pub fn run(a: Args) -> Result<()> {
    std::fs::create_dir_all(&a.dir)?;
    let port = free_port()?;
    let conf = a.dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nallow_anonymous true\npersistence false\nlog_dest none\n\
             listener {port} 127.0.0.1\ncafile {c}/ca.crt\ncertfile {c}/server.crt\nkeyfile {c}/server.key\n",
            c = a.certs.display()
        ),
    )?;
    let _broker = Broker(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("mosquitto (Debian package mosquitto)")?,
    );
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "mosquitto did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // mosquitto_pub's input: the connector's own payload for each update, one per line.
    let lines = a.dir.join("payloads.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&lines)?);
        for n in 0..a.updates {
            let u = update(n);
            let payload =
                serde_json::json!({"value": u.value, "time": u.time_ms, "quality": "GOOD"});
            writeln!(f, "{payload}")?;
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..a.rounds {
        ours.push(rt.block_on(edgeway_round(&a, port))?);
        theirs.push(mosquitto_pub_round(&a, port, &lines)?);
    }
    let mut ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(o, t)| o / t).collect();
    ratios.sort_by(f64::total_cmp);
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{}",
        serde_json::json!({
            "rounds": a.rounds,
            "updates": a.updates,
            "in_flight": IN_FLIGHT,
            "edgeway_per_s": ours,
            "mosquitto_pub_per_s": theirs,
            "edgeway_median": median(&ours),
            "mosquitto_pub_median": median(&theirs),
            "ratio_median": median(&ratios),
            "ratio_min": ratios.first(),
            "ratio_max": ratios.last(),
        })
    );
    Ok(())
}

/// A sidecar publishing `updates` updates from its queue; the rate from the first push to the
/// queue being empty (every PUBACK back).
async fn edgeway_round(a: &Args, port: u16) -> Result<f64> {
    let d = a.dir.display();
    std::fs::write(a.dir.join("users"), "b:b\n")?;
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  plaintext: true\n\
         auth:\n  methods: [basic]\n  basic:\n    usersFile: {d}/users\n\
         admin:\n  listen: 127.0.0.1:0\n\
         mqtt:\n  url: mqtts://localhost:{port}\n  clientId: edgeway-bench\n  gateway: bench\n  server:\n    ca: {c}/ca.crt\n  maxInFlight: {IN_FLIGHT}\n  queue:\n    capacity: {cap}\n\
         logging:\n  level: warn\n",
        c = a.certs.display(),
        cap = a.updates + 1,
    );
    let config = edgeway_sidecar::config::SidecarConfig::parse(&yaml, "bench")?;
    let sidecar = edgeway_sidecar::start(config).await?;
    let mqtt = sidecar.mqtt.clone().context("no mqtt connector")?;
    let queue = sidecar.queue().context("no queue")?.clone();
    let t0 = Instant::now();
    while !mqtt.connected() {
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(10), "not connected");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = Instant::now();
    for chunk in (0..a.updates).collect::<Vec<_>>().chunks(1000) {
        queue.push_many(chunk.iter().map(|&n| update(n)));
    }
    while queue.stats().len > 0 {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(300), "not drained");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = a.updates as f64 / start.elapsed().as_secs_f64();
    sidecar.shutdown().await;
    Ok(rate)
}

/// `mosquitto_pub -l` publishing the same payloads: its whole run, connect to disconnect (it
/// disconnects once the last PUBACK is back).
fn mosquitto_pub_round(a: &Args, port: u16, lines: &std::path::Path) -> Result<f64> {
    let input = std::fs::File::open(lines)?;
    let start = Instant::now();
    let status = Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &port.to_string()])
        .arg("--cafile")
        .arg(a.certs.join("ca.crt"))
        .args(["-q", "1", "-M", &IN_FLIGHT.to_string(), "-t", TOPIC, "-l"])
        .stdin(input)
        .stdout(Stdio::null())
        .status()
        .context("mosquitto_pub (Debian package mosquitto-clients)")?;
    anyhow::ensure!(status.success(), "mosquitto_pub failed: {status}");
    Ok(a.updates as f64 / start.elapsed().as_secs_f64())
}
