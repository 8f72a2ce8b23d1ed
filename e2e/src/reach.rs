//! How the suite reaches a Service from outside the cluster: straight to its cluster IP (the
//! local cluster: this machine is the node, kube-proxy's rules apply to its own traffic) or
//! through `kubectl port-forward` (kind, or any cluster whose Service network is not routable).

use anyhow::{anyhow, bail, Context as _, Result};
use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Mutex;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The way Services are reached, chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Access {
    /// Connect to the Service's cluster IP.
    Direct,
    /// Run `kubectl port-forward svc/NAME` and connect to its loopback port.
    PortForward,
}

/// A Service port: namespace, name, port.
type ServicePort = (String, String, u16);

/// Resolves Services to socket addresses, keeping port-forwards open until dropped.
pub struct Reach {
    access: Access,
    client: Client,
    kubeconfig: String,
    forwards: Mutex<HashMap<ServicePort, (SocketAddr, Child)>>,
}

impl Reach {
    /// A resolver for one cluster.
    pub fn new(access: Access, client: Client, kubeconfig: String) -> Reach {
        Reach {
            access,
            client,
            kubeconfig,
            forwards: Mutex::new(HashMap::new()),
        }
    }

    /// Address for `port` of Service `ns/name`.
    pub async fn service(&self, ns: &str, name: &str, port: u16) -> Result<SocketAddr> {
        match self.access {
            Access::Direct => {
                let svc = Api::<Service>::namespaced(self.client.clone(), ns)
                    .get(name)
                    .await
                    .with_context(|| format!("Service {ns}/{name}"))?;
                let ip = svc
                    .spec
                    .and_then(|s| s.cluster_ip)
                    .filter(|ip| ip != "None")
                    .ok_or_else(|| anyhow!("Service {ns}/{name} has no cluster IP"))?;
                Ok(SocketAddr::new(ip.parse()?, port))
            }
            Access::PortForward => self.forward(ns, name, port).await,
        }
    }

    /// Forgets port-forwards to `ns/name` (its pods were replaced: kubectl's forward dies).
    pub fn reset(&self, ns: &str, name: &str) {
        let mut f = self.forwards.lock().unwrap_or_else(|e| e.into_inner());
        f.retain(|(n, s, _), _| !(n == ns && s == name));
    }

    async fn forward(&self, ns: &str, name: &str, port: u16) -> Result<SocketAddr> {
        let key = (ns.to_owned(), name.to_owned(), port);
        {
            let mut f = self.forwards.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((addr, child)) = f.get_mut(&key) {
                if child.try_wait()?.is_none() {
                    return Ok(*addr);
                }
                f.remove(&key);
            }
        }
        let mut child = Command::new("kubectl")
            .args(["--kubeconfig", &self.kubeconfig, "-n", ns, "port-forward"])
            .arg(format!("svc/{name}"))
            .arg(format!(":{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("kubectl port-forward")?;
        let out = child.stdout.take().context("port-forward stdout")?;
        let mut lines = BufReader::new(out).lines();
        // "Forwarding from 127.0.0.1:43127 -> 8443"
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                let local: u16 = rest
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                    .with_context(|| format!("unexpected port-forward output: {line}"))?;
                let addr = SocketAddr::from(([127, 0, 0, 1], local));
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                self.forwards
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, (addr, child));
                return Ok(addr);
            }
        }
        bail!("kubectl port-forward svc/{name} in {ns} exited before forwarding")
    }
}
