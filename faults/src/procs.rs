//! The two binaries under test as processes: the platform inside the lab's namespace, the
//! sidecar here, each with its config and log file in the run's directory.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use edgeway_testkit::client::{basic, Conn};
use edgeway_testkit::pki::Ca;
use edgeway_testkit::platform::{APP_KEY, APP_KEY_NAME};

use crate::net::Lab;

/// The platform's AlwaysOn, REST and admin ports inside the namespace.
pub const ALWAYSON_PORT: u16 = 8443;
const REST_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 9090;

/// Paths of the binaries under test.
#[derive(Clone)]
pub struct Binaries {
    /// `edgeway-platform`.
    pub platform: PathBuf,
    /// `edgeway-sidecar`.
    pub sidecar: PathBuf,
    /// `edgeway-operator`.
    pub operator: PathBuf,
}

/// The files both ends share: PKI, app keys, users.
pub struct Files {
    /// The run's directory.
    pub dir: PathBuf,
    platform_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    app_keys: PathBuf,
    app_key: PathBuf,
    users: PathBuf,
}

impl Files {
    /// Writes a platform certificate for `ip` (and loopback, for the delaying proxy).
    pub fn write(dir: &Path, ip: IpAddr) -> Result<Files> {
        std::fs::create_dir_all(dir)?;
        let ca = Ca::new("Edgeway Faults CA");
        let (cert, key) = ca.server_for_ips(&[ip]).write(dir, "platform");
        let platform_ca = dir.join("platform-ca.crt");
        std::fs::write(&platform_ca, &ca.pem)?;
        let app_keys = dir.join("app-keys");
        std::fs::write(&app_keys, format!("{APP_KEY_NAME}:{APP_KEY}\n"))?;
        let app_key = dir.join("app-key");
        std::fs::write(&app_key, format!("{APP_KEY}\n"))?;
        let users = dir.join("users");
        std::fs::write(&users, "t:t\n")?;
        Ok(Files {
            dir: dir.to_path_buf(),
            platform_ca,
            cert,
            key,
            app_keys,
            app_key,
            users,
        })
    }
}

/// A child process killed (SIGKILL) when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        Ok(Proc { child, log })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The platform, inside the lab's namespace.
pub struct Platform {
    proc: Proc,
    rest: SocketAddr,
}

impl Platform {
    /// Starts it and waits until its REST API answers.
    pub async fn start(lab: &Lab, bins: &Binaries, files: &Files, tag: &str) -> Result<Platform> {
        let config = files.dir.join(format!("platform-{tag}.yaml"));
        std::fs::write(
            &config,
            format!(
                "listen: {ip}:{ALWAYSON_PORT}\n\
                 tls:\n  cert: {}\n  key: {}\n  clientAuth: off\n  watch: false\n\
                 auth:\n  appKeysFile: {}\n\
                 rest:\n  listen: {ip}:{REST_PORT}\n\
                 admin:\n  listen: {ip}:{ADMIN_PORT}\n\
                 historySize: 1000000\n",
                files.cert.display(),
                files.key.display(),
                files.app_keys.display(),
                ip = lab.ip,
            ),
        )?;
        let mut cmd = lab.command(&bins.platform);
        cmd.arg("--config").arg(&config);
        let proc = Proc::spawn(cmd, files.dir.join(format!("platform-{tag}.log")))?;
        let mut p = Platform {
            proc,
            rest: SocketAddr::new(lab.ip, REST_PORT),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while p.get("/api/gateways").await.is_err() {
            if !p.proc.alive() || Instant::now() > deadline {
                bail!("the platform did not start: see {}", p.proc.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(p)
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    async fn get(&self, path: &str) -> Result<serde_json::Value> {
        let resp = tokio::time::timeout(Duration::from_secs(10), async {
            Conn::plain(self.rest)
                .await?
                .get(path, &[])
                .await
                .map_err(anyhow::Error::from)
        })
        .await
        .context("platform REST timed out")??;
        if !resp.status.is_success() {
            bail!("GET {path}: {}", resp.status);
        }
        Ok(resp.json())
    }

    /// Updates stored, and resends it dropped as duplicates, since it started.
    pub async fn stats(&self) -> Result<(u64, u64)> {
        let v = self.get("/api/stats").await?;
        let n = |k: &str| v[k].as_u64().with_context(|| format!("no {k} in {v}"));
        Ok((n("updatesStored")?, n("duplicatesDropped")?))
    }

    /// The latest stored value of `thing`'s `n`, if any.
    pub async fn latest(&self, thing: &str) -> Result<Option<i64>> {
        match self.get(&format!("/api/things/{thing}/properties/n")).await {
            Ok(v) => Ok(v["value"].as_f64().map(|f| f as i64)),
            Err(e) if e.to_string().contains("404") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stored values of `thing`'s `n`, oldest first (empty when it has none).
    pub async fn history(&self, thing: &str) -> Result<Vec<i64>> {
        let v = match self
            .get(&format!("/api/things/{thing}/properties/n?history=1"))
            .await
        {
            Ok(v) => v,
            Err(e) if e.to_string().contains("404") => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        Ok(v["history"]
            .as_array()
            .context("no history in the answer")?
            .iter()
            .filter_map(|p| p["value"].as_f64())
            .map(|f| f as i64)
            .collect())
    }
}

/// How a sidecar run is set up.
#[derive(Clone)]
pub struct SidecarSpec {
    /// Where its tunnel connects.
    pub platform: SocketAddr,
    /// Simulated devices `dev-0..`.
    pub devices: u32,
    /// Each device's update interval.
    pub interval_ms: u64,
    /// The counter's first value (a second run starts far above the first).
    pub start: i64,
    /// Persist the queue here.
    pub queue_dir: Option<PathBuf>,
}

/// The sidecar, in this namespace.
pub struct Sidecar {
    proc: Proc,
    server: SocketAddr,
    admin: SocketAddr,
}

/// Keep-alive of the suite's sidecars: silence is declared dead within 3 s.
pub const KEEP_ALIVE: Duration = Duration::from_millis(2000);
/// How long the platform has to answer a keep-alive ping.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_millis(1000);

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Sidecar {
    /// Starts it and waits until its admin port answers.
    pub async fn start(
        bins: &Binaries,
        files: &Files,
        spec: &SidecarSpec,
        tag: &str,
    ) -> Result<Sidecar> {
        let (server, admin) = (free_port()?, free_port()?);
        let queue = spec
            .queue_dir
            .as_ref()
            .map(|d| format!("    dir: {}\n", d.display()))
            .unwrap_or_default();
        let config = files.dir.join(format!("sidecar-{tag}.yaml"));
        std::fs::write(
            &config,
            format!(
                "server:\n  listen: 127.0.0.1:{server}\n  plaintext: true\n\
                 auth:\n  methods: [basic]\n  basic:\n    usersFile: {users}\n\
                 admin:\n  listen: 127.0.0.1:{admin}\n\
                 simulation:\n  namePrefix: dev-\n  count: {devices}\n  properties:\n    - name: n\n      baseType: INTEGER\n      intervalMs: {interval}\n      generator: {{ kind: counter, start: {start}, step: 1 }}\n\
                 tunnel:\n  url: wss://{platform}/Thingworx/WS\n  appKeyFile: {key}\n  gateway:\n    name: gw-faults\n\
                 \x20 server:\n    ca: {ca}\n\
                 \x20 timing:\n    startupJitterMs: 0\n    backoffInitialMs: 100\n    backoffMaxMs: 1000\n    keepAliveMs: {ka}\n    keepAliveTimeoutMs: {kat}\n\
                 \x20 queue:\n    capacity: 2000000\n{queue}",
                users = files.users.display(),
                devices = spec.devices,
                interval = spec.interval_ms,
                start = spec.start,
                platform = spec.platform,
                key = files.app_key.display(),
                ca = files.platform_ca.display(),
                ka = KEEP_ALIVE.as_millis(),
                kat = KEEP_ALIVE_TIMEOUT.as_millis(),
            ),
        )?;
        let mut cmd = Command::new(&bins.sidecar);
        cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
        let proc = Proc::spawn(cmd, files.dir.join(format!("sidecar-{tag}.log")))?;
        let mut s = Sidecar {
            proc,
            server: SocketAddr::from(([127, 0, 0, 1], server)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.metrics().await.is_err() {
            if !s.proc.alive() || Instant::now() > deadline {
                bail!("the sidecar did not start: see {}", s.proc.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(s)
    }

    /// SIGKILL, no goodbye: nothing is flushed that was not flushed already.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.proc.alive()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    async fn metrics(&self) -> Result<String> {
        let resp = tokio::time::timeout(Duration::from_secs(5), async {
            Conn::plain(self.admin)
                .await?
                .get("/metrics", &[])
                .await
                .map_err(anyhow::Error::from)
        })
        .await
        .context("sidecar admin timed out")??;
        Ok(String::from_utf8_lossy(&resp.body).into_owned())
    }

    /// A metric's value (the first series of that name), 0 when absent.
    pub async fn metric(&self, name: &str) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0))
    }

    /// Whether the tunnel is up.
    pub async fn up(&self) -> Result<bool> {
        Ok(self.metric("edgeway_sidecar_tunnel_up").await? >= 1.0)
    }

    /// The value `thing`'s `n` has now on the sidecar.
    pub async fn value(&self, thing: &str) -> Result<i64> {
        let auth = basic("t", "t");
        let resp = Conn::plain(self.server)
            .await?
            .get(
                &format!("/Thingworx/Things/{thing}/Properties/n"),
                &[("authorization", &auth)],
            )
            .await?;
        let v = resp.json();
        // The EMS shape: an InfoTable whose single row holds the property.
        v["rows"][0]["n"]
            .as_f64()
            .or_else(|| v["n"].as_f64())
            .map(|f| f as i64)
            .with_context(|| format!("no value of {thing}.n in {v}"))
    }
}
