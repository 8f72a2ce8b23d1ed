//! The live view of local mode: gateways, tunnels, devices, updates per second, and what to try.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use edgeway_runtime::admin::MetricsText;

use super::state::State;
use super::{LocalPod, Platform};

/// Acknowledged updates of one sidecar so far, read from its own metrics.
fn acked(p: &LocalPod) -> f64 {
    p.sidecar
        .metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("edgeway_sidecar_tunnel_updates_total{kind=\"acked\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn table(pods: &[LocalPod], rates: &HashMap<String, f64>) -> String {
    let mut s = format!(
        "{:<24} {:<8} {:>8} {:>8} {:>10} {:>10}  {}\n",
        "POD", "TUNNEL", "DEVICES", "QUEUE", "ACKED", "UPDATES/S", "HTTPS"
    );
    for p in pods {
        let up = p.sidecar.connected();
        let queue = p.sidecar.queue().map_or(0, |q| q.stats().len);
        s.push_str(&format!(
            "{:<24} {:<8} {:>8} {:>8} {:>10} {:>10.0}  https://localhost:{}\n",
            p.pod,
            if up { "up" } else { "down" },
            p.devices,
            queue,
            acked(p),
            rates.get(&p.pod).copied().unwrap_or(0.0),
            p.sidecar.server_addr.port()
        ));
    }
    s
}

fn footer(pods: &[LocalPod], platform: &Platform, state: &State) -> String {
    let mut s = String::new();
    if let Some(u) = &platform.external {
        s.push_str(&format!("platform: {u}\n"));
    }
    if let Some(p) = &platform.alwayson {
        s.push_str(&format!(
            "platform: wss://localhost:{}/Thingworx/WS (AlwaysOn)  REST http://{}/api/things  stream http://{}/api/stream\n",
            p.alwayson_addr.port(),
            p.rest_addr,
            p.rest_addr
        ));
    }
    if let Some(b) = &platform.broker {
        let login = if b.logins { " -u USER -P PASSWORD" } else { "" };
        s.push_str(&format!(
            "broker: {} (MQTT, embedded)  watch: mosquitto_sub -h localhost -p {} --cafile {}{login} -t '#' -v\n",
            b.url(),
            b.addr.port(),
            state.ca_file().display()
        ));
    }
    s.push_str(&format!(
        "state: {} (CA: {})\n",
        state.dir.display(),
        state.ca_file().display()
    ));
    let mut seen = std::collections::HashSet::new();
    for p in pods {
        if seen.insert(p.gateway.clone()) {
            for l in &p.try_lines {
                s.push_str(&format!("try: {l}\n"));
            }
        }
    }
    s
}

/// Prints the table once (at exit, or for `--until-connected`).
pub async fn print(pods: &[LocalPod], platform: &Platform, state: &State) {
    println!(
        "{}{}",
        table(pods, &HashMap::new()),
        footer(pods, platform, state)
    );
}

/// Redraws every second until Ctrl-C.
pub async fn live(pods: &[LocalPod], platform: &Platform, state: &State) {
    let mut last: HashMap<String, (f64, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => {
                println!("\nstopping...");
                return;
            }
        }
        let mut rates = HashMap::new();
        for p in pods {
            let now = (acked(p), Instant::now());
            if let Some((a, t)) = last.get(&p.pod) {
                let secs = now.1.duration_since(*t).as_secs_f64().max(0.001);
                rates.insert(p.pod.clone(), (now.0 - a) / secs);
            }
            last.insert(p.pod.clone(), now);
        }
        // Clear the screen and redraw; Ctrl-C stops everything cleanly.
        print!(
            "\x1b[2J\x1b[H{}\n{}\nCtrl-C to stop.\n",
            table(pods, &rates),
            footer(pods, platform, state)
        );
        let _ = std::io::stdout().flush();
    }
}
