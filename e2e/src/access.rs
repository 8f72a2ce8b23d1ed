//! Trust and access declared in the EdgeGateway, end to end (issue 20): a pinned device
//! certificate and authorization rules patched into a running gateway reach its pods through
//! the chart's operator and kubelet-mounted ConfigMaps.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use edgeway_operator::certs::Ca;
use edgeway_operator::crd::EdgeGateway;
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
}
