//! Trust and access declared in the EdgeGateway, end to end (issue 20): a pinned device
//! certificate and authorization rules patched into a running gateway reach its pods through
//! the chart's operator and kubelet-mounted ConfigMaps; a rotated basic-auth Secret applies
//! without a pod restart; a CA rotation keeps devices that trust only the old CA verifying the
//! gateway until the overlap ends.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use edgeway_operator::certs::Ca;
use edgeway_operator::crd::EdgeGateway;
use edgeway_operator::resources::NamespaceCa;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::cluster::{apply, config_map, secret_value, wait_for};
use crate::http::{request, Tls};
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

    /// Issue 20 item 6: the namespace CA is replaced by one two thirds through its life (a CA
    /// brought from elsewhere, or one simply getting old). The operator publishes a successor
    /// in `ca.crt` and keeps signing server certificates with the old CA, so a device that
    /// trusts only the old CA keeps verifying the gateway and one that trusts only the
    /// successor does not yet. Ending the overlap early (`operator.caOverlapDays=0`, as an admin
    /// whose devices all fetched the new bundle would) makes the successor sign: the re-issued
    /// server certificate verifies with it alone, and no longer with the old CA alone.
    pub async fn ca_rotation(&self) -> Result<()> {
        const DAY: i64 = 24 * 3600;
        let now = now_ms() / 1000;
        let cn = NamespaceCa::Gateway.common_name(GW_NS);
        // 20 of its 22 days gone: due for rotation (at two thirds), two days left.
        let old = Ca::generate(&cn, now - 20 * DAY, 22 * DAY)?;
        let secrets = Api::<Secret>::namespaced(self.client.clone(), GW_NS);
        let ca_secret = NamespaceCa::Gateway.secret_name();
        secrets
            .patch(
                ca_secret,
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {
                    "tls.crt": old.cert_pem, "tls.key": old.key_pem, "ca.crt": old.cert_pem
                }})),
            )
            .await?;
        let next_pem = wait_for(
            "the successor CA published beside the old one",
            Duration::from_secs(180),
            || async {
                let signing = secret_value(&self.client, GW_NS, ca_secret, "tls.crt").await?;
                let bundle = secret_value(&self.client, GW_NS, ca_secret, "ca.crt").await?;
                let next = secret_value(&self.client, GW_NS, ca_secret, "next.crt").await;
                match next {
                    Ok(next) if signing == old.cert_pem && bundle.contains(next.trim()) => {
                        ensure!(bundle.contains(old.cert_pem.trim()), "old CA not in ca.crt");
                        Ok(Some(next))
                    }
                    Ok(_) => Err(anyhow!("tls.crt or ca.crt not as expected yet")),
                    Err(e) => Err(e),
                }
            },
        )
        .await?;
        let started = Api::<Event>::namespaced(self.client.clone(), GW_NS)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .any(|e| e.reason.as_deref() == Some("CARotationStarted"));
        ensure!(started, "no CARotationStarted event");
        let addr = self.reach.service(GW_NS, "pumps", 8443).await?;
        let trusting = |ca_pem: &str| Tls {
            ca_pem: ca_pem.to_owned(),
            server_name: format!("pumps.{GW_NS}.svc"),
            client: None,
        };
        let (old_only, next_only) = (trusting(&old.cert_pem), trusting(&next_pem));
        let verifies = |tls: Tls| async move {
            request(addr, Some(&tls), "GET", "/healthz", &[], None)
                .await
                .map(|_| ())
        };
        wait_for(
            "the gateway presents a certificate from the old CA",
            Duration::from_secs(240),
            || async { verifies(old_only.clone()).await.map(Some) },
        )
        .await?;
        ensure!(
            verifies(next_only.clone()).await.is_err(),
            "during the overlap the successor must not sign yet"
        );
        println!("    overlap: ca.crt has old + successor; old-CA-only device verifies");
        self.release("upgrade", &["--set-json", "operator.caOverlapDays=0"])?;
        wait_for("the successor signs", Duration::from_secs(180), || async {
            let signing = secret_value(&self.client, GW_NS, ca_secret, "tls.crt").await?;
            match signing.trim() == next_pem.trim() {
                true => Ok(Some(())),
                false => Err(anyhow!("tls.crt is still the old CA")),
            }
        })
        .await?;
        wait_for(
            "the gateway presents a certificate from the successor",
            Duration::from_secs(240),
            || async { verifies(next_only.clone()).await.map(Some) },
        )
        .await?;
        ensure!(
            verifies(old_only.clone()).await.is_err(),
            "after the overlap the old CA must not sign any more"
        );
        let bundle = secret_value(&self.client, GW_NS, ca_secret, "ca.crt").await?;
        ensure!(
            bundle.contains(old.cert_pem.trim()),
            "the old CA stays in ca.crt until it expires"
        );
        println!("    promoted: successor-only device verifies, old-CA-only device refused");
        Ok(())
    }
}
