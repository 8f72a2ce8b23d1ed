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
        let (up, queue) = match &p.sidecar.tunnel {
            Some(t) => (t.connected(), t.queue_state().0),
            None => (false, 0),
        };
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
    match platform {
        Platform::Local(p) => s.push_str(&format!(
            "platform: {} (AlwaysOn)  REST http://{}/api/things  stream http://{}/api/stream\n",
            platform.url(),
            p.rest_addr,
            p.rest_addr
        )),
        Platform::External(u) => s.push_str(&format!("platform: {u}\n")),
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
