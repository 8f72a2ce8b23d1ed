//! The MQTT platform on the cluster: a Mosquitto (packed from this machine's Debian binary on the
//! local cluster, the eclipse-mosquitto image on kind) in the release namespace, TLS with a CA
//! of this run and a password file; `examples/mqtt.yaml` applied as it is; its updates read
//! back and a service call made with Mosquitto's own clients; a gateway with a wrong password
//! reported `Connected=False/CredentialsRefused`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, DeleteParams};
use serde_json::Value;

use crate::cluster::{apply, condition, wait_for};
use crate::scenarios::{Suite, GW_NS};
use edgeway_operator::certs::{Ca, Usage};
use edgeway_operator::crd::{EdgeGateway, KeyAlgorithm};

/// The broker's Service (examples/mqtt.yaml points at `mosquitto.edgeway.svc:8883`).
const BROKER: &str = "mosquitto";
const USER: &str = "plant1-gateway";
/// The example's gateway and a copy of it whose login the broker refuses.
const GATEWAY: &str = "plant1";
const REFUSED: &str = "plant1-refused";

impl Suite {
    /// examples/mqtt.yaml against a real Mosquitto: data, a command, a refused login.
    pub async fn mqtt_gateway(&self) -> Result<()> {
        let dir = std::env::temp_dir().join(format!("edgeway-e2e-mqtt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let m = edgeway_operator::local::manifests::load(&[self.s.repo.join("examples/mqtt.yaml")])
            .map_err(|e| anyhow!("examples/mqtt.yaml: {e}"))?;
        let password = m
            .secret("e2e", "mqtt-login", "password")
            .map_err(|e| anyhow!("examples/mqtt.yaml: {e}"))?;
        let ca = self.start_broker(&dir, &password).await?;

        for s in m.secrets.values() {
            apply(&self.client, GW_NS, s).await?;
        }
        for c in m.config_maps.values() {
            apply(&self.client, GW_NS, c).await?;
        }
        apply(
            &self.client,
            GW_NS,
            &crate::cluster::config_map(
                "mqtt-broker-ca",
                BTreeMap::from([("ca.crt".into(), ca.clone())]),
            ),
        )
        .await?;
        let (_, gw) = m
            .gateways
            .first()
            .context("no EdgeGateway in examples/mqtt.yaml")?;
        apply(&self.client, GW_NS, gw).await?;
        // The same gateway, without its fleet, logging in with a password the broker refuses.
        let wrong = crate::cluster::secret(
            "mqtt-login-wrong",
            BTreeMap::from([("password".into(), "not-the-password".into())]),
        );
        apply(&self.client, GW_NS, &wrong).await?;
        let mut refused: EdgeGateway = gw.clone();
        refused.metadata.name = Some(REFUSED.into());
        refused.spec.simulation = None;
        refused.spec.server.port = 12444;
        if let Some(mq) = refused.spec.platform.mqtt.as_mut() {
            mq.password_secret
                .as_mut()
                .context("example has a password")?
                .name = "mqtt-login-wrong".into();
        }
        apply(&self.client, GW_NS, &refused).await?;

        let outcome = self.mqtt_checks(&dir, &ca, &password).await;
        for name in [GATEWAY, REFUSED] {
            let _ = Api::<EdgeGateway>::namespaced(self.client.clone(), GW_NS)
                .delete(name, &DeleteParams::default())
                .await;
        }
        self.stop_broker().await;
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    }

    async fn mqtt_checks(&self, dir: &Path, ca: &str, password: &str) -> Result<()> {
        self.wait_condition(GATEWAY, "Connected", "True", "TunnelsUp")
            .await?;
        println!("    {GATEWAY}: Connected through Mosquitto");
        let broker = self.reach.service(&self.s.namespace, BROKER, 8883).await?;
        let ca_file = dir.join("ca.crt");
        std::fs::write(&ca_file, ca)?;
        let client = |tool: &str| {
            let mut c = Command::new(tool);
            c.args([
                "-h",
                &broker.ip().to_string(),
                "-p",
                &broker.port().to_string(),
            ])
            .arg("--cafile")
            .arg(&ca_file)
            // The Service is reached by address; the chain is still verified.
            .arg("--insecure")
            .args(["-u", USER, "-P", password, "-q", "1"]);
            c
        };
        // Simulated sensors and the Lua meter publish under the example's prefix.
        let out = run(client("mosquitto_sub").args([
            "-t",
            "plant1/sensor-7/properties/Temperature",
            "-t",
            "plant1/Meter1/properties/Energy",
            "-v",
            "-C",
            "4",
            "-W",
            "60",
        ]))?;
        ensure!(
            out.contains("plant1/sensor-7/properties/Temperature {")
                || out.contains("plant1/Meter1/properties/Energy {"),
            "no updates read back: {out}"
        );
        let state = run(client("mosquitto_sub").args([
            "-t",
            "plant1/gateways/plant1/state",
            "-C",
            "1",
            "-W",
            "20",
        ]))?;
        ensure!(state.contains("\"online\":true"), "birth message: {state}");
        println!("    updates and the retained birth message read back with mosquitto_sub");

        // A service call through the broker: the Lua meter's Reset, answered on its topic
        // (asked again every 2 s until the listening mosquitto_sub has its answer).
        let reply = "plant1/Meter1/services/Reset/response";
        let mut sub = client("mosquitto_sub")
            .args(["-t", reply, "-C", "1", "-W", "90"])
            .stdout(Stdio::piped())
            .spawn()
            .context("mosquitto_sub (Debian package mosquitto-clients)")?;
        let request = r#"{"id": "e2e-reset"}"#;
        for _ in 0..30 {
            run(client("mosquitto_pub").args([
                "-t",
                "plant1/Meter1/services/Reset/request",
                "-m",
                request,
            ]))?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            if sub.try_wait()?.is_some() {
                break;
            }
        }
        let out = sub.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let a: Value = serde_json::from_str(text.trim())
            .with_context(|| format!("no JSON answer on {reply}: {text:?}"))?;
        ensure!(a["id"] == "e2e-reset" && a["status"] == 200, "answer: {a}");
        println!("    service call answered through the broker: {a}");

        self.wait_condition(REFUSED, "Connected", "False", "CredentialsRefused")
            .await?;
        println!("    {REFUSED}: Connected=False/CredentialsRefused");
        Ok(())
    }

    async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> Result<()> {
        wait_for(
            &format!("{name} {type_}={status}/{reason}"),
            Duration::from_secs(300),
            || async move {
                let gw = Api::<EdgeGateway>::namespaced(self.client.clone(), GW_NS)
                    .get(name)
                    .await?;
                let gw = serde_json::to_value(gw)?;
                let got = condition(&gw, type_);
                let why = gw
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
                    .map(|c| c["reason"].as_str().unwrap_or_default().to_owned());
                if got.as_deref() == Some(status) && why.as_deref() == Some(reason) {
                    return Ok(Some(()));
                }
                Err(anyhow!("{type_}={got:?} reason={why:?}"))
            },
        )
        .await
    }

    /// Mosquitto in the release namespace: a CA and server certificate of this run, the
    /// example's login in a password file (`mosquitto_passwd`), a restricted pod. Returns the CA.
    async fn start_broker(&self, dir: &Path, password: &str) -> Result<String> {
        let ns = &self.s.namespace;
        let now = crate::scenarios::now_ms() / 1000;
        let ca = Ca::generate("edgeway e2e MQTT broker CA", now, 86_400)?;
        let names = [
            format!("{BROKER}.{ns}.svc"),
            format!("{BROKER}.{ns}.svc.cluster.local"),
        ];
        let leaf = ca.issue(
            BROKER,
            &names,
            Usage::Server,
            KeyAlgorithm::default(),
            now,
            86_400,
        )?;
        let passwd = dir.join("passwd");
        let status = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args([USER, password])
            .status()
            .context("mosquitto_passwd (Debian package mosquitto)")?;
        ensure!(status.success(), "mosquitto_passwd failed");
        let conf = "per_listener_settings false\nallow_anonymous false\n\
                    password_file /etc/mosquitto/passwd\npersistence false\nlog_dest stdout\n\
                    listener 8883\ncafile /etc/mosquitto/ca.crt\ncertfile /etc/mosquitto/tls.crt\n\
                    keyfile /etc/mosquitto/tls.key\n";
        let files = crate::cluster::secret(
            BROKER,
            BTreeMap::from([
                ("mosquitto.conf".into(), conf.into()),
                ("passwd".into(), std::fs::read_to_string(&passwd)?),
                ("ca.crt".into(), ca.cert_pem.clone()),
                ("tls.crt".into(), leaf.cert_pem),
                ("tls.key".into(), leaf.key_pem),
            ]),
        );
        apply(&self.client, ns, &files).await?;
        let labels = serde_json::json!({"app.kubernetes.io/name": BROKER});
        let deploy: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": BROKER, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": false,
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                            "runAsGroup": 65532, "fsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "mosquitto",
                            "image": self.s.mosquitto_image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["/usr/sbin/mosquitto", "-c", "/etc/mosquitto/mosquitto.conf"],
                            "ports": [{"name": "mqtts", "containerPort": 8883, "protocol": "TCP"}],
                            "readinessProbe": {"tcpSocket": {"port": 8883}, "periodSeconds": 2},
                            "securityContext": {"allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "capabilities": {"drop": ["ALL"]}},
                            "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "10m"}},
                            "volumeMounts": [{"name": "files", "mountPath": "/etc/mosquitto", "readOnly": true}],
                        }],
                        "volumes": [{"name": "files", "secret": {"secretName": BROKER, "defaultMode": 0o440}}],
                    },
                },
            },
        }))?;
        apply(&self.client, ns, &deploy).await?;
        let svc: Service = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": BROKER},
            "spec": {"selector": labels, "ports": [{"name": "mqtts", "port": 8883, "targetPort": 8883, "protocol": "TCP"}]},
        }))?;
        apply(&self.client, ns, &svc).await?;
        wait_for("Mosquitto ready", Duration::from_secs(120), || async {
            let d = Api::<Deployment>::namespaced(self.client.clone(), ns)
                .get(BROKER)
                .await?;
            let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            if ready >= 1 {
                return Ok(Some(()));
            }
            Err(anyhow!("{ready} ready replicas"))
        })
        .await?;
        println!("    Mosquitto ({}) ready", self.s.mosquitto_image);
        Ok(ca.cert_pem)
    }

    async fn stop_broker(&self) {
        let ns = &self.s.namespace;
        let dp = DeleteParams::default();
        let _ = Api::<Deployment>::namespaced(self.client.clone(), ns)
            .delete(BROKER, &dp)
            .await;
        let _ = Api::<Service>::namespaced(self.client.clone(), ns)
            .delete(BROKER, &dp)
            .await;
        let _ = Api::<Secret>::namespaced(self.client.clone(), ns)
            .delete(BROKER, &dp)
            .await;
        self.reach.reset(ns, BROKER);
    }
}

/// Runs a Mosquitto client; its standard output, or why it failed.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("{cmd:?} (Debian package mosquitto-clients)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "{:?} failed ({}): {stdout}{}",
        cmd.get_program(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}
