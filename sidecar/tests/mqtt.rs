//! A real sidecar publishing to a real Mosquitto (Debian's `mosquitto`, started by the test on
//! 127.0.0.1 with TLS and websockets-over-TLS listeners and a password file), read back by
//! Mosquitto's own `mosquitto_sub` and driven with its `mosquitto_pub`: properties and the
//! retained birth message, a broker restart with nothing lost, wrong credentials refused,
//! service calls, writes and events of a Lua thing.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgeway_protocol::basetype::{BaseType, Quality};
use edgeway_sidecar::config::SidecarConfig;
use edgeway_sidecar::mqtt::config::{MqttVersion, TopicPreset};
use edgeway_sidecar::tunnel::outbox::Update;
use edgeway_testkit::client::get;
use edgeway_testkit::pki::Pki;

const USER: &str = "gateway";
const PASSWORD: &str = "s3cret-pw";

async fn wait_for<F, Fut>(what: &str, secs: u64, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    edgeway_testkit::eventually(what, Duration::from_secs(secs), f).await
}

/// A Mosquitto broker with a TLS listener and a websockets-over-TLS listener; killed on drop.
struct Broker {
    child: Option<Child>,
    conf: PathBuf,
    tls_port: u16,
    ws_port: u16,
}

impl Broker {
    fn start(pki: &Pki, dir: &Path) -> Broker {
        let passwd = dir.join("passwd");
        let status = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args([USER, PASSWORD])
            .status()
            .expect("mosquitto_passwd (Debian package mosquitto) is installed");
        assert!(status.success());
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        // Both held at once: two free_port() calls one after the other can return the same
        // port (it happened: the websockets listener then failed to bind).
        let (tls_port, ws_port) = {
            let a = TcpListener::bind("127.0.0.1:0").unwrap();
            let b = TcpListener::bind("127.0.0.1:0").unwrap();
            (
                a.local_addr().unwrap().port(),
                b.local_addr().unwrap().port(),
            )
        };
        let tls = format!(
            "cafile {}\ncertfile {}\nkeyfile {}\n",
            pki.ca_file.display(),
            pki.cert.display(),
            pki.key.display()
        );
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\nper_listener_settings false\nallow_anonymous false\n\
                 password_file {}\nmax_queued_messages 100000\npersistence true\npersistence_location {}/\n\
                 log_dest stderr\n\
                 listener {tls_port} 127.0.0.1\n{tls}\
                 listener {ws_port} 127.0.0.1\nprotocol websockets\n{tls}",
                passwd.display(),
                data.display(),
            ),
        )
        .unwrap();
        let mut broker = Broker {
            child: None,
            conf,
            tls_port,
            ws_port,
        };
        broker.run();
        broker
    }

    /// Starts the broker process (again) and waits until it accepts connections.
    fn run(&mut self) {
        let log = std::fs::File::create(self.conf.with_extension("log")).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto (Debian package mosquitto) is installed");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.tls_port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "mosquitto did not listen; see {}",
            self.conf.with_extension("log").display()
        );
    }

    /// Sends the broker process `signal` (`STOP`: it stalls with its connections open).
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Stops the broker the way a restart does (SIGTERM: it saves its persistent state).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

static SUBSCRIBERS: AtomicUsize = AtomicUsize::new(0);

/// `mosquitto_sub` with a persistent session at QoS 1, its `topic payload` lines collected;
/// started once its subscription is acknowledged (what is published before that would not
/// reach it: a test once lost its first values to a subscriber still starting).
struct Subscriber {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    /// Lines `topic payload` (`-v`).
    fn start(pki: &Pki, port: u16, topic: &str) -> Subscriber {
        Subscriber::start_with(pki, port, topic, &["-v"])
    }

    /// Lines as `args` say (`-F '%t %x'`: the payload in hex).
    fn start_with(pki: &Pki, port: u16, topic: &str, args: &[&str]) -> Subscriber {
        // Line-buffered (coreutils' stdbuf): its protocol lines are not flushed otherwise.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "localhost",
                "-p",
                &port.to_string(),
            ])
            .arg("--cafile")
            .arg(&pki.ca_file)
            .args(["-u", USER, "-P", PASSWORD, "-q", "1", "-c", "-i"])
            // Its own client id: a second subscriber with the same id would take its session.
            .arg(format!(
                "test-sub-{}",
                SUBSCRIBERS.fetch_add(1, Ordering::Relaxed)
            ))
            // `-d`: protocol lines too, among them the SUBACK waited for below.
            .args(["-t", topic, "-d"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (Debian package mosquitto-clients) is installed");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let sub = Subscriber { child, lines };
        for _ in 0..200 {
            if sub.lines().iter().any(|l| l.contains("received SUBACK")) {
                return sub;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "mosquitto_sub {topic}: no SUBACK in 10 s: {:?}",
            sub.lines()
        );
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Payloads (JSON) received on `topic`.
    fn payloads(&self, topic: &str) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix(topic)?.strip_prefix(' '))
            .map(|p| serde_json::from_str(p).unwrap())
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sidecar whose platform is the broker at `url`; `extra` goes at the top level.
fn sidecar_config(pki: &Pki, dir: &Path, url: &str, password: &str, extra: &str) -> SidecarConfig {
    let users = dir.join("users");
    std::fs::write(&users, "t:t\n").unwrap();
    let pw = dir.join("mqtt-password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  plaintext: true\n\
         auth:\n  methods: [basic]\n  basic:\n    usersFile: {}\n\
         admin:\n  listen: 127.0.0.1:0\n\
         mqtt:\n  url: {url}\n  clientId: gw-test-0\n  gateway: gw-test\n  username: {USER}\n  passwordFile: {}\n\
         \x20 server:\n    ca: {}\n  backoffInitialMs: 50\n  backoffMaxMs: 200\n\
         {extra}",
        users.display(),
        pw.display(),
        pki.ca_file.display(),
    );
    SidecarConfig::parse(&yaml, "test").unwrap()
}

fn value(thing: &str, n: i64) -> Update {
    Update {
        thing: thing.into(),
        property: "n".into(),
        base_type: BaseType::Integer,
        value: serde_json::json!(n),
        time_ms: 1_700_000_000_000 + n,
        quality: Quality::Good,
        event: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_properties_and_the_birth_message_reach_the_broker_over_tls_and_websockets() {
    let pki = Pki::new("mqtt-tls-ws");
    let broker = Broker::start(&pki, &pki.dir);
    let sub = Subscriber::start(&pki, broker.tls_port, "edgeway/#");
    // Each sidecar simulates its own devices (name prefix per transport).
    let sim = |prefix: &str| {
        format!(
            "simulation:\n  namePrefix: {prefix}-\n  count: 3\n  properties:\n    - name: n\n      \
             baseType: INTEGER\n      intervalMs: 50\n      generator: {{ kind: counter, start: 0, step: 1 }}\n"
        )
    };
    for (url, prefix) in [
        (format!("mqtts://localhost:{}", broker.tls_port), "tls"),
        (format!("wss://localhost:{}/mqtt", broker.ws_port), "ws"),
    ] {
        let thing = format!("{prefix}-2");
        let dir = pki.dir.join(prefix);
        std::fs::create_dir_all(&dir).unwrap();
        let sidecar =
            edgeway_sidecar::start(sidecar_config(&pki, &dir, &url, PASSWORD, &sim(prefix)))
                .await
                .unwrap();
        let topic = format!("edgeway/{thing}/properties/n");
        wait_for(&format!("{thing}'s values over {url}"), 20, || {
            let n = sub.payloads(&topic).len();
            async move { n >= 5 }
        })
        .await;
        let mqtt = sidecar.mqtt.clone().unwrap();
        assert!(mqtt.connected());
        // Each payload carries the value, its sample time and quality; the counter counts up.
        let got = sub.payloads(&topic);
        for p in &got {
            assert_eq!(p["quality"], "GOOD", "{p}");
            assert!(p["time"].as_i64().unwrap() > 1_600_000_000_000, "{p}");
        }
        let values: Vec<i64> = got.iter().map(|p| p["value"].as_i64().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
        sidecar.shutdown().await;
    }
    // The birth message said online; the clean shutdown said offline (both retained). The
    // last goodbye passes through the broker after shutdown returns: waited for.
    let state = "edgeway/gateways/gw-test/state";
    wait_for("the last state: offline", 10, || {
        let states = sub.payloads(state);
        let offline = states.last() == Some(&serde_json::json!({"online": false}));
        async move { offline }
    })
    .await;
    assert!(
        sub.payloads(state)
            .contains(&serde_json::json!({"online": true})),
        "{:?}",
        sub.payloads(state)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing_queued() {
    let pki = Pki::new("mqtt-restart");
    let mut broker = Broker::start(&pki, &pki.dir);
    let topic = "edgeway/pump/properties/n";
    // A persistent QoS 1 subscription: the broker keeps it, and what is published while this
    // subscriber is away, across its own restart.
    let sub = Subscriber::start(&pki, broker.tls_port, topic);
    let url = format!("mqtts://localhost:{}", broker.tls_port);
    let sidecar = edgeway_sidecar::start(sidecar_config(&pki, &pki.dir, &url, PASSWORD, ""))
        .await
        .unwrap();
    let mqtt = sidecar.mqtt.clone().unwrap();
    let queue = sidecar.queue().unwrap().clone();
    wait_for("connected", 10, || {
        let up = mqtt.connected();
        async move { up }
    })
    .await;
    queue.push_many((0..100).map(|n| value("pump", n)));
    wait_for("the first 100 values at the subscriber", 20, || {
        let n = sub.payloads(topic).len();
        async move { n >= 100 }
    })
    .await;

    // A burst, and the broker stops while it is being published: some of it is in flight (no
    // PUBACK yet), some still queued; then more arrives while the broker is down.
    queue.push_many((100..1100).map(|n| value("pump", n)));
    broker.stop();
    wait_for("the sidecar notices the broker is gone", 20, || {
        let up = mqtt.connected();
        async move { !up }
    })
    .await;
    queue.push_many((1100..1200).map(|n| value("pump", n)));
    assert!(queue.stats().len >= 100, "held while the broker is down");

    broker.run();
    wait_for("everything acknowledged after the restart", 30, || {
        let (up, len) = (mqtt.connected(), queue.stats().len);
        async move { up && len == 0 }
    })
    .await;
    // Distinct values: QoS 1 may deliver some twice, and counting those would stop the wait
    // before the last ones are in (it once did).
    let distinct = |sub: &Subscriber| {
        let mut v: Vec<i64> = sub
            .payloads(topic)
            .iter()
            .map(|p| p["value"].as_i64().unwrap())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    wait_for("all 1,200 values at the subscriber", 30, || {
        let n = distinct(&sub).len();
        async move { n >= 1200 }
    })
    .await;
    assert_eq!(
        distinct(&sub),
        (0..1200).collect::<Vec<_>>(),
        "every value arrived"
    );
    assert_eq!(queue.stats().dropped, 0);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_and_said_so() {
    let pki = Pki::new("mqtt-refused");
    let broker = Broker::start(&pki, &pki.dir);
    let url = format!("mqtts://localhost:{}", broker.tls_port);
    let sidecar = edgeway_sidecar::start(sidecar_config(&pki, &pki.dir, &url, "wrong", ""))
        .await
        .unwrap();
    let admin = sidecar.admin_addr;
    let text = |r: edgeway_testkit::client::Resp| String::from_utf8_lossy(&r.body).into_owned();
    wait_for("a refusal counted as unauthorized", 20, || async move {
        let body = text(get(admin, "/metrics").await);
        body.lines()
            .any(|l| l.contains("disconnects") && l.contains("unauthorized") && !l.ends_with(" 0"))
    })
    .await;
    assert!(!sidecar.mqtt.as_ref().unwrap().connected());
    // The gauge the operator reads for its CredentialsRefused condition.
    let body = text(get(admin, "/metrics").await);
    assert!(
        body.contains("edgeway_sidecar_tunnel_connect_failing{stage=\"credentials\"} 1"),
        "{body}"
    );
    // The password never appears in what the sidecar exposes.
    assert!(!body.contains("wrong") && !body.contains(PASSWORD));
    // The right password written into the file (as a rotated Secret's volume does) is used
    // from the next attempt on: no restart.
    std::fs::write(pki.dir.join("mqtt-password"), format!("{PASSWORD}\n")).unwrap();
    let mqtt = sidecar.mqtt.clone().unwrap();
    wait_for("connected with the rotated password", 20, || {
        let up = mqtt.connected();
        async move { up }
    })
    .await;
    let body = text(get(admin, "/metrics").await);
    assert!(
        body.contains("edgeway_sidecar_tunnel_connect_failing{stage=\"credentials\"} 0"),
        "{body}"
    );
    sidecar.shutdown().await;
}

/// Publishes one message with Mosquitto's own `mosquitto_pub`, as a platform application would.
fn publish(pki: &Pki, port: u16, topic: &str, payload: &str) {
    publish_stdin(pki, port, topic, &["-m", payload], b"");
}

/// Runs `mosquitto_pub` for `topic` with `args` (`-l`: a message per line of `stdin`; `-s`:
/// `stdin` as one message).
fn publish_stdin(pki: &Pki, port: u16, topic: &str, args: &[&str], stdin: &[u8]) {
    use std::io::Write;
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &port.to_string()])
        .arg("--cafile")
        .arg(&pki.ca_file)
        .args(["-u", USER, "-P", PASSWORD, "-q", "1", "-t", topic])
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub (Debian package mosquitto-clients) is installed");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    assert!(child.wait().unwrap().success(), "mosquitto_pub {topic}");
}

/// Publishes `body` on `topic` (again, until the gateway's subscription is in place) and
/// returns the first answer on `reply` that `wanted` accepts.
async fn ask(
    pki: &Pki,
    port: u16,
    sub: &Subscriber,
    (topic, reply): (&str, &str),
    body: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..40 {
        publish(pki, port, topic, body);
        for _ in 0..10 {
            if let Some(a) = sub.payloads(reply).into_iter().find(&wanted) {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("no answer on {reply} to {body}");
}

/// A meter template: a `Setpoint` to write and an `Add` service to call.
const SETPOINT_AND_ADD: &str = r#"
properties.Setpoint = { baseType="NUMBER", pushType="VALUE", value=0 }
serviceDefinitions.Add(output { baseType="NUMBER" }, input { name="a", baseType="NUMBER" }, input { name="b", baseType="NUMBER" })
services.Add = function(me, headers, query, data) return 200, data.a + data.b end
"#;

/// A Lua thing `Meter1` of `template` under `lua:`, its limits `limits` (YAML lines).
fn meter(pki: &Pki, template: &str, limits: &str) -> String {
    let lua = pki.dir.join("meter.lua");
    std::fs::write(&lua, template).unwrap();
    format!(
        "lua:\n{limits}  templates:\n    - name: meter\n      file: {}\n  things:\n    - name: Meter1\n      template: meter\n      scanRateMs: 30\n",
        lua.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_calls_and_writes_from_the_broker_reach_lua_things_and_are_answered() {
    let pki = Pki::new("mqtt-commands");
    let broker = Broker::start(&pki, &pki.dir);
    let sub = Subscriber::start(&pki, broker.tls_port, "edgeway/#");
    let things = meter(
        &pki,
        r#"
properties.Setpoint = { baseType="NUMBER", pushType="VALUE", value=0 }
serviceDefinitions.Add(output { baseType="NUMBER" }, input { name="a", baseType="NUMBER" }, input { name="b", baseType="NUMBER" })
services.Add = function(me, headers, query, data) return 200, data.a + data.b end
services.Fail = function(me, headers, query, data) return 409, "meter is locked" end
eventDefinitions.Alarm(input { name="text", baseType="STRING" })
services.Raise = function(me, headers, query, data)
    assert(me:fireEvent("Alarm", { text = data.text }))
end
"#,
        "",
    );
    let url = format!("mqtts://localhost:{}", broker.tls_port);
    let sidecar = edgeway_sidecar::start(sidecar_config(&pki, &pki.dir, &url, PASSWORD, &things))
        .await
        .unwrap();
    let mqtt = sidecar.mqtt.clone().unwrap();
    wait_for("connected", 10, || {
        let up = mqtt.connected();
        async move { up }
    })
    .await;
    let ask = |topic: &'static str, reply: &'static str, body: serde_json::Value| {
        let (pki, sub) = (&pki, &sub);
        async move {
            let id = body["id"].clone();
            let wanted = |a: &serde_json::Value| a["id"] == id;
            crate::ask(
                pki,
                broker.tls_port,
                sub,
                (topic, reply),
                &body.to_string(),
                wanted,
            )
            .await
        }
    };
    let add = "edgeway/Meter1/services/Add/request";
    let added = "edgeway/Meter1/services/Add/response";
    let a = ask(
        add,
        added,
        serde_json::json!({"id": "r1", "params": {"a": 2, "b": 3}}),
    )
    .await;
    assert_eq!(
        a,
        serde_json::json!({"id": "r1", "status": 200, "result": 5})
    );
    let a = ask(
        add,
        added,
        serde_json::json!({"id": "r2", "params": {"a": "x", "b": 3}}),
    )
    .await;
    assert_eq!(a["status"], 400, "{a}");
    let a = ask(
        "edgeway/Meter1/services/Fail/request",
        "edgeway/Meter1/services/Fail/response",
        serde_json::json!({"id": 3}),
    )
    .await;
    assert_eq!(
        a,
        serde_json::json!({"id": 3, "status": 409, "error": "meter is locked"})
    );
    let a = ask(
        "edgeway/Meter1/services/Nope/request",
        "edgeway/Meter1/services/Nope/response",
        serde_json::json!({"id": "r4"}),
    )
    .await;
    assert_eq!(a["status"], 404, "{a}");

    // A write: answered, and the new value published as the property's update.
    let set = "edgeway/Meter1/properties/Setpoint/set";
    let set_reply = "edgeway/Meter1/properties/Setpoint/set/response";
    let a = ask(set, set_reply, serde_json::json!({"id": "w1", "value": 42})).await;
    assert_eq!(a, serde_json::json!({"id": "w1", "status": 200}));
    wait_for("the written value published", 10, || {
        let seen = sub
            .payloads("edgeway/Meter1/properties/Setpoint")
            .iter()
            .any(|p| p["value"] == 42);
        async move { seen }
    })
    .await;
    let a = ask(
        set,
        set_reply,
        serde_json::json!({"id": "w2", "value": "warm"}),
    )
    .await;
    assert_eq!(a["status"], 400, "{a}");
    let a = ask(set, set_reply, serde_json::json!({"id": "w3"})).await;
    assert_eq!(a["status"], 400, "{a}");

    // An event fired by a service goes out on the thing's event topic.
    let a = ask(
        "edgeway/Meter1/services/Raise/request",
        "edgeway/Meter1/services/Raise/response",
        serde_json::json!({"id": "e1", "params": {"text": "hot"}}),
    )
    .await;
    assert_eq!(a["status"], 200, "{a}");
    wait_for("the event published", 10, || {
        let seen = sub
            .payloads("edgeway/Meter1/events/Alarm")
            .iter()
            .any(|p| p["data"]["text"] == "hot");
        async move { seen }
    })
    .await;
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_command_messages_are_refused_without_harm() {
    let pki = Pki::new("mqtt-hostile");
    let broker = Broker::start(&pki, &pki.dir);
    let sub = Subscriber::start(&pki, broker.tls_port, "edgeway/#");
    let things = meter(
        &pki,
        r#"
serviceDefinitions.Add(output { baseType="NUMBER" }, input { name="a", baseType="NUMBER" }, input { name="b", baseType="NUMBER" })
services.Add = function(me, headers, query, data) return 200, data.a + data.b end
services.Spin = function(me, headers, query, data) while true do end end
"#,
        "  limits:\n    deadlineMs: 500\n",
    );
    let url = format!("mqtts://localhost:{}", broker.tls_port);
    let sidecar = edgeway_sidecar::start(sidecar_config(&pki, &pki.dir, &url, PASSWORD, &things))
        .await
        .unwrap();
    let port = broker.tls_port;
    let add = (
        "edgeway/Meter1/services/Add/request",
        "edgeway/Meter1/services/Add/response",
    );
    let works = |id: &'static str| {
        let (pki, sub) = (&pki, &sub);
        async move {
            let body = serde_json::json!({"id": id, "params": {"a": 2, "b": 3}});
            let a = ask(pki, port, sub, add, &body.to_string(), |a| a["id"] == id).await;
            assert_eq!(a["result"], 5, "{a}");
        }
    };
    works("first").await;

    // Not JSON, and JSON that is not an object: 400, saying so.
    for (body, says) in [
        ("not json", "is not JSON"),
        ("[1, 2]", "must be a JSON object"),
    ] {
        let a = ask(&pki, port, &sub, add, body, |a| {
            a["error"].as_str().is_some_and(|e| e.contains(says))
        })
        .await;
        assert_eq!(a["status"], 400, "{a}");
    }

    // 70 calls at once of a service that spins until its deadline (500 ms, one at a time on its
    // thing): 64 are taken, the rest answered 503 at once, each with its own id.
    let spin = (
        "edgeway/Meter1/services/Spin/request",
        "edgeway/Meter1/services/Spin/response",
    );
    let lines: String = (0..70).map(|i| format!("{{\"id\": {i}}}\n")).collect();
    publish_stdin(&pki, port, spin.0, &["-l"], lines.as_bytes());
    wait_for("an answer to each of the 70 calls", 30, || {
        let answered: std::collections::HashSet<i64> = sub
            .payloads(spin.1)
            .iter()
            .filter_map(|a| a["id"].as_i64())
            .collect();
        async move { answered.len() == 70 }
    })
    .await;
    let busy = sub
        .payloads(spin.1)
        .into_iter()
        .filter(|a| a["status"] == 503 && a["error"].as_str().unwrap().contains("too many"))
        .count();
    assert!((1..=6).contains(&busy), "{busy} calls refused as too many");
    works("after the flood").await;

    // A message over the 64 KiB incoming bound drops the connection; the broker would deliver
    // it again on every reconnect of the persistent session, so the gateway must get past it.
    let big = format!(
        "{{\"id\": \"big\", \"pad\": \"{}\"}}",
        "x".repeat(70 * 1024)
    );
    publish_stdin(&pki, port, add.0, &["-s"], big.as_bytes());
    let admin = sidecar.admin_addr;
    wait_for("the oversized message counted", 20, || async move {
        let r = get(admin, "/metrics").await;
        String::from_utf8_lossy(&r.body)
            .lines()
            .any(|l| l.contains("disconnects") && l.contains("oversized") && !l.ends_with(" 0"))
    })
    .await;
    works("after the oversized message").await;
    assert!(
        !sub.payloads(add.1).iter().any(|a| a["id"] == "big"),
        "the oversized call must not run"
    );
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_shadow_reports_properties_and_applies_deltas() {
    let pki = Pki::new("mqtt-aws-shadow");
    let broker = Broker::start(&pki, &pki.dir);
    // `#` does not match topics starting with `$`: the shadow topics need their own filter.
    let shadows = Subscriber::start(&pki, broker.tls_port, "$aws/things/+/shadow/update");
    let answers = Subscriber::start(&pki, broker.tls_port, "plant/#");
    let things = meter(
        &pki,
        r#"
properties.Setpoint = { baseType="NUMBER", pushType="VALUE", value=0 }
properties.Mode = { baseType="STRING", pushType="VALUE", value="auto" }
"#,
        "",
    );
    let url = format!("mqtts://localhost:{}", broker.tls_port);
    let mut config = sidecar_config(&pki, &pki.dir, &url, PASSWORD, &things);
    let topics = &mut config.mqtt.as_mut().unwrap().topics;
    topics.preset = TopicPreset::AwsShadow;
    topics.prefix = "plant".into();
    let sidecar = edgeway_sidecar::start(config).await.unwrap();
    let port = broker.tls_port;

    // A delta from the shadow service: both properties written, the answer by version, and
    // each written value reported back into the shadow (which clears the delta in AWS).
    let delta_topic = "$aws/things/Meter1/shadow/update/delta";
    let reply = "plant/Meter1/shadow/delta/response";
    let delta =
        r#"{"version": 7, "timestamp": 1700000000, "state": {"Setpoint": 42, "Mode": "manual"}}"#;
    let a = ask(&pki, port, &answers, (delta_topic, reply), delta, |a| {
        a["id"] == 7
    })
    .await;
    assert_eq!(a["status"], 200, "{a}");
    assert_eq!(a["results"]["Setpoint"]["status"], 200, "{a}");
    wait_for("both written values reported to the shadow", 10, || {
        let reported: Vec<serde_json::Value> = shadows
            .payloads("$aws/things/Meter1/shadow/update")
            .into_iter()
            .map(|p| p["state"]["reported"].clone())
            .collect();
        let seen = reported.iter().any(|r| r["Setpoint"] == 42)
            && reported.iter().any(|r| r["Mode"] == "manual");
        async move { seen }
    })
    .await;

    // A delta the thing refuses in part: the failure's status, per property.
    let bad = r#"{"version": 8, "state": {"Setpoint": "warm", "Mode": "auto"}}"#;
    let a = ask(&pki, port, &answers, (delta_topic, reply), bad, |a| {
        a["id"] == 8
    })
    .await;
    assert_eq!(a["status"], 400, "{a}");
    assert_eq!(a["results"]["Setpoint"]["status"], 400, "{a}");
    assert_eq!(a["results"]["Mode"]["status"], 200, "{a}");

    // A delta without a `state` object: refused as a whole, nothing written.
    let malformed = r#"{"version": 9, "state": "Setpoint=1"}"#;
    let a = ask(&pki, port, &answers, (delta_topic, reply), malformed, |a| {
        a["id"] == 9
    })
    .await;
    assert_eq!(a["status"], 400, "{a}");
    assert!(a["error"].as_str().unwrap().contains("`state`"), "{a}");
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_iot_hub_messages_direct_methods_and_desired_properties() {
    let pki = Pki::new("mqtt-azure");
    let broker = Broker::start(&pki, &pki.dir);
    let port = broker.tls_port;
    // The device id is the client id (`gw-test-0`); `#` does not match `$` topics.
    let events = Subscriber::start(&pki, port, "devices/gw-test-0/messages/events/#");
    let methods = Subscriber::start(&pki, port, "$iothub/methods/res/#");
    let reported = Subscriber::start(&pki, port, "$iothub/twin/PATCH/properties/reported/#");
    let things = meter(&pki, SETPOINT_AND_ADD, "");
    let url = format!("mqtts://localhost:{port}");
    let mut config = sidecar_config(&pki, &pki.dir, &url, PASSWORD, &things);
    config.mqtt.as_mut().unwrap().topics.preset = TopicPreset::AzureIotHub;
    let sidecar = edgeway_sidecar::start(config).await.unwrap();
    let any = |_: &serde_json::Value| true;

    // Direct methods `<thing>.<service>`: the status in the answer's topic, the result as its
    // body; an unknown method and a bad payload answered too.
    let call = "$iothub/methods/POST/Meter1.Add/?$rid=11";
    let a = ask(
        &pki,
        port,
        &methods,
        (call, "$iothub/methods/res/200/?$rid=11"),
        r#"{"a": 2, "b": 3}"#,
        any,
    )
    .await;
    assert_eq!(a, serde_json::json!(5));
    let nope = "$iothub/methods/POST/Meter1.Nope/?$rid=12";
    let a = ask(
        &pki,
        port,
        &methods,
        (nope, "$iothub/methods/res/404/?$rid=12"),
        "{}",
        any,
    )
    .await;
    assert!(a["error"].is_string(), "{a}");
    let no_dot = "$iothub/methods/POST/Reboot/?$rid=13";
    let a = ask(
        &pki,
        port,
        &methods,
        (no_dot, "$iothub/methods/res/404/?$rid=13"),
        "null",
        any,
    )
    .await;
    assert!(
        a["error"].as_str().unwrap().contains("<thing>.<service>"),
        "{a}"
    );
    let bad = "$iothub/methods/POST/Meter1.Add/?$rid=14";
    let a = ask(
        &pki,
        port,
        &methods,
        (bad, "$iothub/methods/res/400/?$rid=14"),
        "[1, 2]",
        any,
    )
    .await;
    assert!(a["error"].is_string(), "{a}");

    // A desired-properties patch: the write applied (its value goes out as a device-to-cloud
    // message with the thing and property in the message's properties) and acknowledged in
    // the reported properties; a key that is no thing is refused there too.
    let desired = "$iothub/twin/PATCH/properties/desired/?$version=5";
    let patch = r#"{"Meter1": {"__t": "c", "Setpoint": 42}, "interval": 7, "$version": 5}"#;
    let a = ask(
        &pki,
        port,
        &reported,
        (
            desired,
            "$iothub/twin/PATCH/properties/reported/?$rid=desired-5",
        ),
        patch,
        any,
    )
    .await;
    assert_eq!(
        a["Meter1"],
        serde_json::json!({"__t": "c", "Setpoint": {"value": 42, "ac": 200, "av": 5}}),
        "{a}"
    );
    assert_eq!(a["interval"]["ac"], 400, "{a}");
    let setpoint = "devices/gw-test-0/messages/events/thing=Meter1&property=Setpoint&$.ct=application%2Fjson&$.ce=utf-8";
    wait_for("the written value as a device-to-cloud message", 10, || {
        let seen = events.payloads(setpoint).iter().any(|p| p["value"] == 42);
        async move { seen }
    })
    .await;
    // The connection state is a message on the events topic too (IoT Hub takes no other).
    let state = "devices/gw-test-0/messages/events/kind=state&gateway=gw-test&$.ct=application%2Fjson&$.ce=utf-8";
    assert!(
        events
            .payloads(state)
            .contains(&serde_json::json!({"online": true})),
        "{:?}",
        events.lines()
    );
    sidecar.shutdown().await;
}

/// The Sparkplug messages `sub` (`-F '%t %x'`) received, decoded by the independent codec
/// (`fixtures/sparkplug.py`: Google's protobuf runtime and Debian's protoc), in arrival order.
fn sparkplug_messages(sub: &Subscriber) -> Vec<serde_json::Value> {
    use std::io::Write;
    let mut child = Command::new("/usr/bin/python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sparkplug.py"))
        .arg("decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("Debian's python3 with python3-protobuf and protobuf-compiler");
    let text = sub.lines().join("\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "sparkplug.py decode failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A Sparkplug payload made by the independent codec from `metrics` (name, DataType, value).
fn sparkplug_payload(metrics: serde_json::Value) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("/usr/bin/python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sparkplug.py"))
        .arg("encode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let spec = serde_json::json!({"timestamp": 1_700_000_000_000u64, "metrics": metrics});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "sparkplug.py encode failed");
    out.stdout
}

/// The value of metric `name` in a decoded message, if it has one.
fn metric<'a>(m: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    m["metrics"].as_array()?.iter().find(|x| x["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparkplug_b_births_data_and_commands_read_by_an_independent_decoder() {
    let pki = Pki::new("mqtt-sparkplug");
    let mut broker = Broker::start(&pki, &pki.dir);
    let port = broker.tls_port;
    let sub = Subscriber::start_with(&pki, port, "spBv1.0/#", &["-F", "%t %x"]);
    let template = format!(
        "{SETPOINT_AND_ADD}properties.Count = {{ baseType=\"INTEGER\", pushType=\"VALUE\", value=-2 }}\n"
    );
    let things = meter(&pki, &template, "");
    let url = format!("mqtts://localhost:{port}");
    let mut config = sidecar_config(&pki, &pki.dir, &url, PASSWORD, &things);
    let topics = &mut config.mqtt.as_mut().unwrap().topics;
    topics.preset = TopicPreset::SparkplugB;
    topics.prefix = "plant".into();
    let sidecar = edgeway_sidecar::start(config).await.unwrap();
    let node = "spBv1.0/plant/NBIRTH/gw-test-0";
    let dbirth = "spBv1.0/plant/DBIRTH/gw-test-0/Meter1";
    let ddata = "spBv1.0/plant/DDATA/gw-test-0/Meter1";
    let topic_is = |t: &'static str| move |m: &&serde_json::Value| m["topic"] == t;

    // The births: NBIRTH (seq 0, bdSeq, the rebirth control), then the thing's DBIRTH with
    // every property typed and valued.
    wait_for("NBIRTH and DBIRTH", 20, || {
        let n = sparkplug_messages(&sub)
            .iter()
            .filter(|m| m["topic"] == dbirth)
            .count();
        async move { n >= 1 }
    })
    .await;
    let all = sparkplug_messages(&sub);
    let birth = all.iter().find(topic_is(node)).unwrap();
    assert_eq!(birth["seq"], 0, "{birth}");
    let bd = metric(birth, "bdSeq").unwrap();
    assert_eq!(
        (&bd["datatype"], &bd["value"]),
        (&"Int64".into(), &0.into())
    );
    let rebirth = metric(birth, "Node Control/Rebirth").unwrap();
    assert_eq!(rebirth["value"], false, "{birth}");
    let d = all.iter().find(topic_is(dbirth)).unwrap();
    let setpoint = metric(d, "Setpoint").unwrap();
    assert_eq!(setpoint["datatype"], "Double", "{d}");
    assert_eq!(setpoint["value"], 0.0, "{d}");
    let count = metric(d, "Count").unwrap();
    assert_eq!(
        (&count["datatype"], &count["value"]),
        (&"Int32".into(), &(-2).into())
    );

    // A DCMD: a write and a service call; each metric's outcome comes back in DDATA as
    // `Results/<metric>`, and the written value as DDATA too.
    let dcmd = "spBv1.0/plant/DCMD/gw-test-0/Meter1";
    let cmd = sparkplug_payload(serde_json::json!([
        {"name": "Setpoint", "datatype": "Double", "value": 42.0},
        {"name": "Services/Add", "datatype": "String", "value": "{\"a\": 2, \"b\": 3}"}
    ]));
    let result = |name: &str| {
        sparkplug_messages(&sub)
            .iter()
            .rev()
            .filter(|m| m["topic"] == ddata)
            .find_map(|m| metric(m, &format!("Results/{name}")))
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(r["value"].as_str().unwrap()).unwrap()
            })
    };
    let mut answered = None;
    for _ in 0..40 {
        publish_stdin(&pki, port, dcmd, &["-s"], &cmd);
        tokio::time::sleep(Duration::from_millis(300)).await;
        answered = result("Services/Add");
        if answered.is_some() {
            break;
        }
    }
    assert_eq!(
        answered,
        Some(serde_json::json!({"status": 200, "result": 5}))
    );
    assert_eq!(result("Setpoint"), Some(serde_json::json!({"status": 200})));
    wait_for("the written Setpoint in DDATA", 10, || {
        let seen = sparkplug_messages(&sub)
            .iter()
            .filter(|m| m["topic"] == ddata)
            .any(|m| metric(m, "Setpoint").is_some_and(|s| s["value"] == 42.0));
        async move { seen }
    })
    .await;
    // A write of the wrong type: refused, and said so.
    let bad = sparkplug_payload(serde_json::json!([
        {"name": "Setpoint", "datatype": "String", "value": "warm"}
    ]));
    publish_stdin(&pki, port, dcmd, &["-s"], &bad);
    wait_for("the refused write's result", 10, || {
        let r = result("Setpoint");
        async move { r.is_some_and(|r| r["status"] == 400) }
    })
    .await;

    // A host asks for a rebirth (NCMD): NBIRTH again from seq 0, same bdSeq, and the DBIRTH.
    let ncmd = sparkplug_payload(serde_json::json!([
        {"name": "Node Control/Rebirth", "datatype": "Boolean", "value": true}
    ]));
    publish_stdin(&pki, port, "spBv1.0/plant/NCMD/gw-test-0", &["-s"], &ncmd);
    wait_for("a second NBIRTH and DBIRTH", 10, || {
        let all = sparkplug_messages(&sub);
        let births = all.iter().filter(|m| m["topic"] == node).count();
        let last_is_dbirth = all.iter().rposition(|m| m["topic"] == dbirth)
            > all.iter().rposition(|m| m["topic"] == node);
        async move { births >= 2 && last_is_dbirth }
    })
    .await;

    // A broker restart: a new connection, so a new birth with the next bdSeq.
    broker.stop();
    broker.run();
    wait_for(
        "an NBIRTH with bdSeq 1 after the broker restart",
        30,
        || {
            let born = sparkplug_messages(&sub)
                .iter()
                .filter(|m| m["topic"] == node)
                .any(|m| metric(m, "bdSeq").is_some_and(|b| b["value"] == 1));
            async move { born }
        },
    )
    .await;

    // A clean shutdown says NDEATH with the session's bdSeq (and no seq).
    sidecar.shutdown().await;
    // (Mosquitto's own shutdown published the first connection's will: NDEATH with bdSeq 0.)
    let death = "spBv1.0/plant/NDEATH/gw-test-0";
    let bd_seq = |m: &serde_json::Value| metric(m, "bdSeq").map(|b| b["value"].clone());
    wait_for("NDEATH with bdSeq 1", 10, || {
        let seen = sparkplug_messages(&sub)
            .iter()
            .filter(topic_is(death))
            .any(|m| bd_seq(m) == Some(1.into()));
        async move { seen }
    })
    .await;
    let all = sparkplug_messages(&sub);
    for d in all.iter().filter(topic_is(death)) {
        assert_eq!(
            d["seq"],
            serde_json::Value::Null,
            "NDEATH carries no seq: {d}"
        );
        assert!(
            [Some(0.into()), Some(1.into())].contains(&bd_seq(d)),
            "a will of one of the two connections: {d}"
        );
    }

    // Sequence numbers: 0 at each NBIRTH, then one more per message, whatever its kind.
    let mut expected = None;
    for m in all.iter().filter(|m| m["seq"].is_u64()) {
        let seq = m["seq"].as_u64().unwrap();
        if m["topic"] == node {
            assert_eq!(seq, 0, "{m}");
        } else {
            assert_eq!(Some(seq), expected, "{m}");
        }
        expected = Some((seq + 1) % 256);
    }
    assert!(all.iter().filter(|m| m["topic"] == ddata).count() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_answers_on_the_response_topic_and_the_broker_keeps_oversized_commands_away() {
    let pki = Pki::new("mqtt5");
    let broker = Broker::start(&pki, &pki.dir);
    let port = broker.tls_port;
    // An MQTT 5 subscriber printing each message with its properties as JSON (`%j`).
    let replies = Subscriber::start_with(&pki, port, "replies/#", &["-V", "5", "-F", "%j"]);
    let values = Subscriber::start(&pki, port, "edgeway/#");
    let things = meter(&pki, SETPOINT_AND_ADD, "");
    let url = format!("mqtts://localhost:{port}");
    let mut config = sidecar_config(&pki, &pki.dir, &url, PASSWORD, &things);
    config.mqtt.as_mut().unwrap().version = MqttVersion::V5;
    let sidecar = edgeway_sidecar::start(config).await.unwrap();
    let mqtt = sidecar.mqtt.clone().unwrap();
    wait_for("connected over MQTT 5", 10, || {
        let up = mqtt.connected();
        async move { up }
    })
    .await;
    wait_for("the birth message", 10, || {
        let born = values
            .payloads("edgeway/gateways/gw-test/state")
            .contains(&serde_json::json!({"online": true}));
        async move { born }
    })
    .await;

    // A request naming its response topic and correlation data (MQTT 5 request/response):
    // answered there, the correlation data echoed.
    let add = "edgeway/Meter1/services/Add/request";
    let answers = |sub: &Subscriber| -> Vec<serde_json::Value> {
        sub.lines()
            .iter()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let ask = |id: &'static str| {
        let body = format!("{{\"id\": \"{id}\", \"params\": {{\"a\": 2, \"b\": 3}}}}");
        let args = [
            "-V",
            "5",
            "-m",
            &body,
            "-D",
            "PUBLISH",
            "response-topic",
            &format!("replies/{id}"),
            "-D",
            "PUBLISH",
            "correlation-data",
            &format!("corr-{id}"),
        ]
        .map(str::to_owned);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        publish_stdin(&pki, port, add, &args, b"");
    };
    let answered = |id: &str| {
        answers(&replies)
            .into_iter()
            .find(|m| m["topic"] == format!("replies/{id}"))
    };
    ask("r1");
    wait_for("the answer on the response topic", 10, || {
        let a = answered("r1");
        async move { a.is_some() }
    })
    .await;
    let a = answered("r1").unwrap();
    assert_eq!(a["properties"]["correlation-data"], "corr-r1", "{a}");
    let body: serde_json::Value = serde_json::from_str(a["payload"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"id": "r1", "status": 200, "result": 5})
    );
    assert!(
        values
            .payloads("edgeway/Meter1/services/Add/response")
            .is_empty(),
        "answered on the response topic only"
    );

    // A command over the 64 KiB the gateway told the broker it accepts: the broker drops it
    // for this client, the connection stays (no oversized disconnect), the next call is
    // answered, and the big one never ran.
    let big = format!(
        "{{\"id\": \"big\", \"pad\": \"{}\"}}",
        "x".repeat(70 * 1024)
    );
    publish_stdin(&pki, port, add, &["-s"], big.as_bytes());
    ask("r2");
    wait_for("the call after the oversized one answered", 10, || {
        let a = answered("r2");
        async move { a.is_some() }
    })
    .await;
    let metrics =
        String::from_utf8_lossy(&get(sidecar.admin_addr, "/metrics").await.body).into_owned();
    assert!(
        !metrics
            .lines()
            .any(|l| l.contains("disconnects") && !l.starts_with('#') && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(!values
        .payloads("edgeway/Meter1/services/Add/response")
        .iter()
        .any(|a| a["id"] == "big"));
    sidecar.shutdown().await;
}

/// A broker that stalls while a large node's births are being handed over (channel full for
/// longer than any fixed wait) must not leave the gateway silent: once the broker answers
/// again the births finish and data flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparkplug_births_outlast_a_stalled_broker() {
    let pki = Pki::new("mqtt-sparkplug-stall");
    let broker = Broker::start(&pki, &pki.dir);
    let port = broker.tls_port;
    let births = Subscriber::start_with(&pki, port, "spBv1.0/plant/NBIRTH/#", &["-F", "%t"]);
    let data = Subscriber::start_with(&pki, port, "spBv1.0/plant/DDATA/#", &["-F", "%t"]);
    let sim = "simulation:\n  namePrefix: d-\n  count: 50000\n  properties:\n    - name: n\n      \
               baseType: INTEGER\n      intervalMs: 1000\n      generator: { kind: counter, start: 0, step: 1 }\n";
    let url = format!("mqtts://localhost:{port}");
    let mut config = sidecar_config(&pki, &pki.dir, &url, PASSWORD, sim);
    let mqtt = config.mqtt.as_mut().unwrap();
    mqtt.topics.preset = TopicPreset::SparkplugB;
    mqtt.topics.prefix = "plant".into();
    // One DBIRTH in flight at a time: the 50,000 births take a while, and the client's channel
    // stays full while the broker is stalled. Keep-alive outlasts the stall.
    mqtt.max_in_flight = 1;
    mqtt.keep_alive_secs = 120;
    let sidecar = edgeway_sidecar::start(config).await.unwrap();
    wait_for("the NBIRTH", 20, || {
        let born = births.lines().iter().any(|l| l.starts_with("spBv1.0/"));
        async move { born }
    })
    .await;
    broker.signal("STOP");
    let stalled = data.lines().iter().any(|l| l.starts_with("spBv1.0/"));
    // Longer than the 10 s (2,000 waits of 5 ms, more in practice) after which births were
    // once given up.
    tokio::time::sleep(Duration::from_secs(20)).await;
    broker.signal("CONT");
    assert!(
        !stalled,
        "the births were still being sent when the broker stalled"
    );
    wait_for("data after the stall", 60, || {
        let flowing = data.lines().iter().any(|l| l.starts_with("spBv1.0/"));
        async move { flowing }
    })
    .await;
    sidecar.shutdown().await;
}
