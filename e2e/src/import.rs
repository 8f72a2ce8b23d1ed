//! An EMS + LSR installation imported with `edgeway-operator import ems` and applied as it
//! came out (issue 21): the gateway comes up and the platform sees its Lua thing connected,
//! with its template's task advancing a property.

use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use edgeway_operator::crd::EdgeGateway;
use edgeway_operator::import::{self, Inputs};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::Value;

use crate::cluster::{apply, secret_value, wait_for};
use crate::scenarios::{Suite, GW_NS};

impl Suite {
    /// Writes an EMS `config.json` pointing at the chart's platform (its CA file and app key,
    /// as an EMS machine would hold them) and a `config.lua` with one thing of the importer's
    /// fixture template, imports them, applies every manifest, and waits for the thing.
    pub async fn imported_gateway(&self) -> Result<()> {
        let dir = std::env::temp_dir().join(format!("edgeway-e2e-import-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let pns = &self.s.namespace;
        let platform = self.platform_name();
        let ca = secret_value(&self.client, pns, &format!("{platform}-tls"), "ca.crt").await?;
        let app_key = secret_value(&self.client, pns, &platform, "appKey").await?;
        std::fs::write(dir.join("platform-ca.pem"), ca)?;
        std::fs::write(
            dir.join("config.json"),
            format!(
                "// imported by the e2e suite\n{{\n  \"ws_servers\": [{{\"host\": \"{platform}.{pns}.svc\", \"port\": 8443}}],\n  \
                 \"appKey\": \"{app_key}\",\n  \"http_server\": {{\"port\": 8443, \"ssl\": true, \"authenticate\": true}},\n  \
                 \"certificates\": {{\"validate\": true, \"cert_chain\": [\"platform-ca.pem\"]}},\n  \
                 \"auto_bind\": [{{\"name\": \"ImportedGateway\", \"gateway\": true}}]\n}}\n"
            ),
        )?;
        std::fs::write(
            dir.join("config.lua"),
            "scripts.ImportedMeter = { file = \"thing.lua\", template = \"meter\", scanRate = 1000 }\n",
        )?;
        let inputs = Inputs {
            config_json: dir.join("config.json"),
            config_lua: Some(dir.join("config.lua")),
            templates: Some(
                self.s
                    .repo
                    .join("operator/tests/fixtures/import/complete/templates"),
            ),
            name: Some("imported".into()),
            namespace: Some(GW_NS.into()),
            ..Inputs::default()
        };
        let draft = import::import(&inputs).map_err(|e| anyhow!("import: {e}"))?;
        anyhow::ensure!(
            draft.report.actions.is_empty(),
            "actions left: {:?}",
            draft.report.actions
        );
        let out = dir.join("out");
        import::write(&draft, &out).map_err(|e| anyhow!("writing: {e}"))?;
        // Applied from the files, as `kubectl apply -f out/` would.
        for entry in std::fs::read_dir(&out)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            for doc in text.split("\n---\n") {
                let v: Value =
                    serde_saphyr::from_str(doc).with_context(|| path.display().to_string())?;
                match v["kind"].as_str() {
                    Some("EdgeGateway") => apply(
                        &self.client,
                        GW_NS,
                        &serde_json::from_value::<EdgeGateway>(v)?,
                    )
                    .await
                    .map(drop)?,
                    Some("ConfigMap") => apply(
                        &self.client,
                        GW_NS,
                        &serde_json::from_value::<ConfigMap>(v)?,
                    )
                    .await
                    .map(drop)?,
                    Some("Secret") => {
                        apply(&self.client, GW_NS, &serde_json::from_value::<Secret>(v)?)
                            .await
                            .map(drop)?
                    }
                    other => return Err(anyhow!("{}: unexpected kind {other:?}", path.display())),
                }
            }
        }
        let path = "/api/things/ImportedMeter/properties/Power";
        let first = wait_for(
            "the imported thing connected, its task running",
            Duration::from_secs(300),
            || async {
                let things = self.platform_get("/api/things").await?;
                let connected = things
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["name"] == "ImportedMeter" && t["connected"] == true);
                if !connected {
                    return Err(anyhow!("ImportedMeter not connected yet"));
                }
                Ok(self.platform_get(path).await?["value"].as_f64())
            },
        )
        .await?;
        wait_for(
            "the imported thing's Power advances",
            Duration::from_secs(30),
            || async {
                let v = self.platform_get(path).await?["value"].as_f64();
                Ok(v.filter(|v| *v > first).map(|_| ()))
            },
        )
        .await?;
        let _ = std::fs::remove_dir_all(&dir);
        println!("    imported gateway up; ImportedMeter connected, Power from {first}");
        Ok(())
    }
}
