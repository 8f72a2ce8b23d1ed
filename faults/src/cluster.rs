//! A Kubernetes 1.20 control plane of its own (etcd, kube-apiserver, kube-controller-manager
//! from `e2e/cluster/apiserver.sh`) and the operator binary as processes, for the faults that
//! hit the operator: the API server restarted under it, its leader killed.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::net::run;

/// The control plane; stopped when dropped.
pub struct ControlPlane {
    dir: PathBuf,
    /// Its kubeconfig.
    pub kubeconfig: PathBuf,
    /// A client for it.
    pub client: Client,
}

impl ControlPlane {
    /// Starts it in `dir` (about 10–30 s) and installs the EdgeGateway CRD from `operator crd`.
    pub async fn start(dir: &Path, operator: &Path) -> Result<ControlPlane> {
        std::fs::create_dir_all(dir)?;
        run(Command::new("bash")
            .arg("e2e/cluster/apiserver.sh")
            .arg("start")
            .arg(dir)
            .stdout(Stdio::null()))
        .context("e2e/cluster/apiserver.sh start (needs e2e/cluster/build.sh first)")?;
        let kubeconfig = dir.join("kubeconfig");
        let client = client(&kubeconfig).await?;
        let cp = ControlPlane {
            dir: dir.to_path_buf(),
            kubeconfig,
            client,
        };
        let yaml = run(Command::new(operator).arg("crd"))?;
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&yaml)?;
        let crds: Api<CustomResourceDefinition> = Api::all(cp.client.clone());
        crds.patch(
            "edgegateways.edgeway.io",
            &PatchParams::apply("edgeway-faults").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        crate::scenarios::wait("the CRD established", Duration::from_secs(30), || async {
            let c = crds.get("edgegateways.edgeway.io").await?;
            Ok(c.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"))
        })
        .await?;
        Ok(cp)
    }

    /// `kill -9` the API server, wait `down`, start it again with the same command line; the
    /// pids file is updated so `stop` still finds it.
    pub async fn restart_apiserver(&self, down: Duration) -> Result<()> {
        let pids_file = self.dir.join("pids");
        let pids = std::fs::read_to_string(&pids_file)?;
        let pid: u32 = pids
            .lines()
            .find_map(|l| {
                l.strip_prefix("kube-apiserver ")?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .context("no kube-apiserver in the pids file")?;
        let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))?
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        run(Command::new("kill").args(["-9", &pid.to_string()]))?;
        tokio::time::sleep(down).await;
        let log = std::fs::File::create(self.dir.join("kube-apiserver-restarted.log"))?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        let new = child.id();
        let stat = std::fs::read_to_string(format!("/proc/{new}/stat"))?;
        // Field 22, after the parenthesised command name.
        let start = stat
            .rsplit(") ")
            .next()
            .and_then(|rest| rest.split(' ').nth(19))
            .context("no start time in /proc/pid/stat")?
            .to_owned();
        let updated: String = pids
            .lines()
            .map(|l| {
                if l.starts_with("kube-apiserver ") {
                    format!("kube-apiserver {new} {start}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&pids_file, updated)?;
        Ok(())
    }

    /// Whether the API server answers.
    pub async fn healthy(&self) -> bool {
        self.client.apiserver_version().await.is_ok()
    }

    /// A namespace holding what a test gateway references: an app-key Secret, a platform CA
    /// and a Lua template (as the operator's cluster tests make them).
    pub async fn gateway_namespace(&self, name: &str) -> Result<()> {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.into());
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), name);
        let s: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "app-key"},
            "stringData": {"key": "not-a-real-key"}
        }))?;
        secrets.create(&PostParams::default(), &s).await?;
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), name);
        for (cm, key, text) in [
            (
                "platform-ca",
                "ca.crt",
                "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            ),
            (
                "scripts",
                "pump.lua",
                "properties.rpm = { baseType = 'NUMBER', value = 0 }\n",
            ),
        ] {
            let m: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": {"name": cm}, "data": {key: text}
            }))?;
            maps.create(&PostParams::default(), &m).await?;
        }
        Ok(())
    }
}

/// A gateway manifest using what [`ControlPlane::gateway_namespace`] made.
pub fn gateway(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "edgeway.io/v1alpha1",
        "kind": "EdgeGateway",
        "metadata": {"name": name},
        "spec": {
            "platform": {
                "url": "wss://platform.example/tunnel",
                "appKey": {"name": "app-key", "key": "key"},
                "serverVerification": {"ca": {"configMapName": "platform-ca"}}
            },
            "lua": {
                "templates": [{"name": "pump", "configMap": "scripts", "key": "pump.lua"}],
                "things": [{"name": "P1", "template": "pump"}]
            }
        }
    })
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = run(Command::new("bash")
            .arg("e2e/cluster/apiserver.sh")
            .arg("stop")
            .arg(&self.dir)
            .stderr(Stdio::null()));
    }
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// An operator process (`edgeway-operator run`), killed (SIGKILL) when dropped.
pub struct Operator {
    child: std::process::Child,
    /// Its identity in the Lease.
    pub identity: String,
}

impl Operator {
    /// Starts one against `cp`; with `lease_namespace`, it takes part in leader election.
    pub fn start(
        bin: &Path,
        cp: &ControlPlane,
        identity: &str,
        lease_namespace: Option<&str>,
        log: &Path,
    ) -> Result<Operator> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let out = std::fs::File::create(log)?;
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg(format!("--metrics-addr=127.0.0.1:{port}"))
            .arg(format!("--identity={identity}"))
            .env("KUBECONFIG", &cp.kubeconfig)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        match lease_namespace {
            Some(ns) => cmd.args(["--leader-elect=true", &format!("--lease-namespace={ns}")]),
            None => cmd.arg("--leader-elect=false"),
        };
        let child = cmd.spawn()?;
        Ok(Operator {
            child,
            identity: identity.into(),
        })
    }

    /// SIGKILL: the Lease is not released.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Fails if the process ended.
    pub fn ensure_alive(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("operator {} exited: {status}", self.identity);
        }
        Ok(())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}
