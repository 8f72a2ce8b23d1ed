//! One tunnel, end to end, in one process: a reference platform (`edgeway_platform::start`) and a
//! sidecar (`edgeway_sidecar::start`) whose tunnel connects to it over TLS on 127.0.0.1.
//!
//! Sources of updates:
//! - `push`: the bench pushes into the tunnel's queue itself, round-robin over `--things` things
//!   (the sidecar's simulated devices, configured with a one-day interval so they are bound but
//!   silent); the outbox is kept below half its capacity so nothing is dropped;
//! - `fleet`: the sidecar's own simulated fleet generates the updates (`--things` devices, one
//!   NUMBER counter every `--interval-ms`), exactly as deployed.
//!
//! An update counts when the platform has stored it (`updatesStored`, as its `/api/stats`
//! serves it). Latency: the push instant (µs, carried in the value) or the
//! fleet's scheduled sample time (ms) against the instant the platform's registry broadcasts the
//! stored value.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use edgeway_platform::registry::Event;
use edgeway_protocol::basetype::{BaseType, Quality};
use edgeway_sidecar::tunnel::outbox::Update;

use crate::util::{now_ms, now_us, percentile, process_cpu_secs, rss_kib};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Directory with ca.crt, server.crt, server.key (ECDSA P-256, from run.sh).
    #[arg(long)]
    certs: PathBuf,
    /// `push` (the bench pushes into the tunnel's queue) or `fleet` (the sidecar's simulated fleet).
    #[arg(long, default_value = "push")]
    source: String,
    /// Distinct things the updates are spread over (push), or fleet devices.
    #[arg(long, default_value_t = 1)]
    things: u32,
    /// Push mode: offered updates/s; 0 = as fast as the tunnel takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Fleet mode: interval of each device's update.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds after the tunnel is up before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Worker threads of the (shared) runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// The tunnel's `maxInFlight`; unset = the sidecar's default.
    #[arg(long)]
    max_in_flight: Option<usize>,
}

static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Microseconds since the bench started (small enough to carry fractions in an f64).
fn rel_us() -> u64 {
    now_us().saturating_sub(*BASE.get_or_init(now_us))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    rel_us();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.workers)
        .enable_all()
        .build()?;
    rt.block_on(run_async(a))
}

fn work_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("edgeway-bench-tunnel-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

async fn run_async(a: Args) -> anyhow::Result<()> {
    let dir = work_dir()?;
    let certs = a.certs.canonicalize().context("--certs")?;
    std::fs::write(dir.join("app-keys"), "bench:bench-app-key-0123456789\n")?;
    std::fs::write(dir.join("app-key"), "bench-app-key-0123456789\n")?;
    std::fs::write(dir.join("users"), "u:{PLAIN}p\n")?;
    let platform_yaml = format!(
        "listen: 127.0.0.1:0\n\
         tls:\n  cert: {c}/server.crt\n  key: {c}/server.key\n  clientAuth: off\n  watch: false\n\
         auth:\n  appKeysFile: {d}/app-keys\n\
         rest:\n  listen: 127.0.0.1:0\n  streamBuffer: 65536\n\
         admin:\n  listen: 127.0.0.1:0\n\
         logging:\n  level: warn\n",
        c = certs.display(),
        d = dir.display()
    );
    let pcfg = edgeway_platform::config::PlatformConfig::parse(&platform_yaml, "bench")?;
    let platform = edgeway_platform::start(pcfg).await?;

    let fleet = a.source == "fleet";
    let (interval, generator) = if fleet {
        (a.interval_ms, "{ kind: counter, start: 0, step: 1 }")
    } else {
        // Bound but silent: the first device is due at start, the others over a day.
        (86_400_000, "{ kind: constant, value: 0 }")
    };
    let sidecar_yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  plaintext: true\n\
         auth:\n  methods: [basic]\n  basic:\n    usersFile: {d}/users\n\
         admin:\n  listen: 127.0.0.1:0\n\
         simulation:\n  namePrefix: dev-\n  count: {n}\n  properties:\n    - name: n\n      baseType: NUMBER\n      intervalMs: {interval}\n      generator: {generator}\n\
         tunnel:\n  url: wss://localhost:{port}/Thingworx/WS\n  appKeyFile: {d}/app-key\n  gateway:\n    name: gw-bench\n  server:\n    ca: {c}/ca.crt\n  timing:\n    startupJitterMs: 0\n{window}\
         logging:\n  level: warn\n",
        d = dir.display(),
        c = certs.display(),
        n = a.things,
        port = platform.alwayson_addr.port(),
        window = a
            .max_in_flight
            .map(|n| format!("  maxInFlight: {n}\n"))
            .unwrap_or_default(),
    );
    let scfg = edgeway_sidecar::config::SidecarConfig::parse(&sidecar_yaml, "bench")?;
    if std::env::var_os("RUST_LOG").is_some() {
        edgeway_runtime::logging::init(&scfg.logging);
    }
    let sidecar = edgeway_sidecar::start(scfg).await?;
    let tunnel = sidecar.tunnel.clone().context("no tunnel")?;

    // Wait (bounded) for the session: AUTH, BIND of every thing, subscriptions.
    let t_connect = Instant::now();
    while !tunnel.connected() {
        anyhow::ensure!(
            t_connect.elapsed() < Duration::from_secs(60),
            "tunnel not up after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = t_connect.elapsed().as_secs_f64();

    // Latency collector: the platform's event broadcast, as /api/stream sees it.
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut events = platform.registry.subscribe();
    let collector = {
        let (stop, measuring) = (stop.clone(), measuring.clone());
        tokio::spawn(async move {
            let (mut lat, mut lagged) = (Vec::<u64>::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                let ev = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
                match ev {
                    Ok(Ok(Event::Update(u))) => {
                        if !measuring.load(Ordering::Relaxed) || lat.len() >= 10_000_000 {
                            continue;
                        }
                        if fleet {
                            // Sample time is the fleet's scheduled time, in ms.
                            let now = now_ms();
                            lat.push(((now - u.time).max(0) as u64) * 1000);
                        } else if let Some(sent) = u.value.as_f64() {
                            lat.push(rel_us().saturating_sub(sent.floor() as u64));
                        }
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => lagged += n,
                    Ok(Err(_)) => break,
                    Err(_) => {}
                }
            }
            (lat, lagged)
        })
    };

    // Producer (push mode).
    let producer = if fleet {
        None
    } else {
        let (stop, tunnel) = (stop.clone(), tunnel.clone());
        let (k, rate) = (a.things as u64, a.rate);
        Some(tokio::spawn(async move {
            let names: Vec<Arc<str>> = (0..k).map(|i| Arc::from(format!("dev-{i}"))).collect();
            let prop: Arc<str> = Arc::from("n");
            let mut seq = 0u64;
            let mut make = |n: u64, value_us: Option<u64>| {
                let t = now_ms();
                let batch: Vec<Update> = (0..n)
                    .map(|j| {
                        seq += 1;
                        // Latency: µs since the bench started, plus j/1000 so that the
                        // updates of one push are distinct values (never duplicates).
                        let v = match value_us {
                            Some(us) => us as f64 + (j % 1000) as f64 / 1000.0,
                            None => seq as f64,
                        };
                        Update {
                            thing: names[(seq % k) as usize].clone(),
                            property: prop.clone(),
                            base_type: BaseType::Number,
                            // Throughput: a counter (never a duplicate); latency: the push instant.
                            value: serde_json::json!(v),
                            time_ms: t,
                            quality: Quality::Good,
                            event: false,
                        }
                    })
                    .collect();
                batch
            };
            if rate == 0 {
                while !stop.load(Ordering::Relaxed) {
                    if tunnel.queue_state().0 < 50_000 {
                        tunnel.queue().push_many(make(1000, None));
                    } else {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            } else {
                // Fixed rate: a push every millisecond, carrying its own timestamp.
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let t0 = Instant::now();
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
                    if due > sent {
                        tunnel.queue().push_many(make(due - sent, Some(rel_us())));
                        sent = due;
                    }
                }
            }
        }))
    };

    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    let snap = || platform.metrics.snapshot();
    let s0 = snap();
    let (cpu0, t0) = (process_cpu_secs(), Instant::now());
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(a.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let s1 = snap();
    let (cpu1, secs) = (process_cpu_secs(), t0.elapsed().as_secs_f64());
    let (queue_len, dropped) = tunnel.queue_state();
    let rss = rss_kib();
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = producer {
        let _ = p.await;
    }
    let (mut lat, lagged) = collector.await?;
    lat.sort_unstable();
    let stored = s1.updates_stored - s0.updates_stored;
    let msgs = |s: &edgeway_platform::metrics::StatsSnapshot| -> u64 {
        s.messages_from_edges.values().sum()
    };
    let out = serde_json::json!({
        "tool": "edgeway-bench tunnel",
        "source": a.source,
        "things": a.things,
        "offered_rate": if fleet { (a.things as u64 * 1000 / a.interval_ms.max(1)) as f64 } else { a.rate as f64 },
        "interval_ms": if fleet { Some(a.interval_ms) } else { None },
        "workers": a.workers,
        "max_in_flight": a.max_in_flight,
        "connect_secs": connect_secs,
        "seconds": secs,
        "stored": stored,
        "updates_per_s": (stored as f64 / secs).round(),
        "messages_per_s": ((msgs(&s1) - msgs(&s0)) as f64 / secs).round(),
        "duplicates": s1.duplicates_dropped - s0.duplicates_dropped,
        "cpu_cores": (cpu1 - cpu0) / secs,
        "rss_kib": rss,
        "queue_len_at_end": queue_len,
        "queue_dropped": dropped,
        "latency_samples": lat.len(),
        "latency_lagged": lagged,
        "p50_ms": percentile(&lat, 50.0) as f64 / 1000.0,
        "p99_ms": percentile(&lat, 99.0) as f64 / 1000.0,
        "max_ms": lat.last().copied().unwrap_or(0) as f64 / 1000.0,
    });
    println!("{out}");
    let _ = tokio::time::timeout(Duration::from_secs(5), sidecar.shutdown()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), platform.shutdown()).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
