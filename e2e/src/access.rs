//! Trust and access declared in the EdgeGateway, end to end (issue 20): a pinned device
//! certificate and authorization rules patched into a running gateway reach its pods through
//! the chart's operator and kubelet-mounted ConfigMaps; a rotated basic-auth Secret applies
//! without a pod restart.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use edgeway_operator::certs::Ca;
use edgeway_operator::crd::EdgeGateway;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::cluster::{apply, config_map, secret_value, wait_for};
use crate::http::request;
use crate::scenarios::{now_ms, Suite, GW_NS};

impl Suite {
    /// Pins a self-signed device certificate (a ConfigMap key, as an APS controller's saved
    /// certificate) beside the namespace CA and adds a rule letting clients only read: the
    /// pinned device gets in, a basic user's write is refused with 403 by rule.
    pub async fn trust_and_access(&self) -> Result<()> {
        let device = Ca::generate("aps-controller", now_ms() / 1000, 3600)?;
        let pins = BTreeMap::from([("controller.pem".to_owned(), device.cert_pem.clone())]);
        apply(&self.client, GW_NS, &config_map("saved-devices", pins)).await?;
        Api::<EdgeGateway>::namespaced(self.client.clone(), GW_NS)
            .patch(
                "pumps",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"server": {
                    "pinnedClientCertificates": [
                        {"configMapName": "saved-devices", "key": "controller.pem"}
                    ],
                    "authorization": [
                        {"name": "readers", "principals": ["basic:*", "mtls:*"], "actions": ["read"]}
                    ]
                }}})),
            )
            .await?;
        let addr = self.reach.service(GW_NS, "pumps", 8443).await?;
        let path = "/Thingworx/Things/Pump1/Properties/Speed";
        let pinned = self
            .gateway_tls(Some((device.cert_pem.clone(), device.key_pem.clone())))
            .await?;
        wait_for(
            "the pinned device is let in",
            Duration::from_secs(240),
            || async {
                match request(addr, Some(&pinned), "GET", path, &[], None).await {
                    Ok(r) if r.status == 200 => Ok(Some(())),
                    Ok(r) => Err(anyhow!("status {}", r.status)),
                    Err(e) => Err(e),
                }
            },
        )
        .await?;
        let user = secret_value(&self.client, GW_NS, "pumps-basic-auth", "username").await?;
        let pass = secret_value(&self.client, GW_NS, "pumps-basic-auth", "password").await?;
        let auth = {
            use base64::Engine as _;
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            vec![("authorization", format!("Basic {b}"))]
        };
        let anon = self.gateway_tls(None).await?;
        let r = request(addr, Some(&anon), "GET", path, &auth, None).await?;
        ensure!(r.status == 200, "a read by rule: {}", r.status);
        let body = json!({"Speed": 900});
        let r = request(addr, Some(&anon), "PUT", path, &auth, Some(body)).await?;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        ensure!(
            r.status == 403,
            "a write no rule allows: {} {text}",
            r.status
        );
        ensure!(
            text.contains("auth.authorization"),
            "403 names the rules: {text}"
        );
        println!("    pinned self-signed device 200; basic read 200, write 403 by rule");
        Ok(())
    }

    /// Rotates the gateway's basic-auth Secret (a new password and users file, as a user
    /// rotating credentials would): within the kubelet's sync the new password works, the old
    /// one is refused, and the pods were not restarted.
    pub async fn rotated_credentials(&self) -> Result<()> {
        let pods0 = self.pod_uids("pumps").await?;
        let user = secret_value(&self.client, GW_NS, "pumps-basic-auth", "username").await?;
        let old = secret_value(&self.client, GW_NS, "pumps-basic-auth", "password").await?;
        let (password, users) = edgeway_operator::resources::generate_basic_credentials()
            .map_err(|e| anyhow!("generating credentials: {e}"))?;
        Api::<Secret>::namespaced(self.client.clone(), GW_NS)
            .patch(
                "pumps-basic-auth",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"password": password, "users": users}})),
            )
            .await?;
        let addr = self.reach.service(GW_NS, "pumps", 8443).await?;
        let path = "/Thingworx/Things/Pump1/Properties/Speed";
        let anon = self.gateway_tls(None).await?;
        let basic = |p: &str| {
            use base64::Engine as _;
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{p}"));
            vec![("authorization", format!("Basic {b}"))]
        };
        wait_for(
            "the rotated password accepted",
            Duration::from_secs(240),
            || async {
                let r = request(addr, Some(&anon), "GET", path, &basic(&password), None).await?;
                match r.status {
                    200 => Ok(Some(())),
                    s => Err(anyhow!("status {s}")),
                }
            },
        )
        .await?;
        let r = request(addr, Some(&anon), "GET", path, &basic(&old), None).await?;
        ensure!(
            r.status == 401,
            "the old password after the rotation: {}",
            r.status
        );
        ensure!(
            self.pod_uids("pumps").await? == pods0,
            "the gateway pods were replaced"
        );
        println!("    new password 200, old password 401, same pods");
        Ok(())
    }
}
