//! One gateway in local mode, step by step: its certificates, its sidecar config rendered by
//! the operator's own code and pointed at local files, then one sidecar per pod.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use edgeway_runtime::logging::LogFormat;
use edgeway_runtime::tls::ClientAuthMode;
use edgeway_sidecar::config::{AuthMethodName, SidecarConfig};
use edgeway_sidecar::tunnel::config::{ClientCert, ServerVerification};
use kube::ResourceExt;

use super::manifests::Manifests;
use super::state::{write, CertFiles, LeafRequest, State};
use super::{free_or_any, lifetime, lua_sources, now, LocalError, LocalPod, Platform};
use crate::certs::{Lifetime, Usage};
use crate::crd::{ClientTrust, EdgeGateway, KeyFormat, PlatformProtocol, SecretKeyRef};
use crate::resources::config::{pod_config, pod_count, render, CredentialMount};
use crate::resources::{generate_basic_credentials, Names, NamespaceCa, BASIC_USER};

/// What the steps of one gateway share.
struct Gateway<'a> {
    state: &'a State,
    m: &'a Manifests,
    gw: &'a EdgeGateway,
    name: String,
    dir: PathBuf,
    life: Lifetime,
}

impl Gateway<'_> {
    /// A manifest problem, named by gateway.
    fn bad(&self, e: impl std::fmt::Display) -> LocalError {
        LocalError::Manifest(format!("EdgeGateway {}: {e}", self.name))
    }

    /// Writes the Secret key `r` that `field` names to `file` in the gateway's directory, 0600
    /// and as it is: what the pod's Secret volume holds, read by the sidecar's own rule.
    fn secret_file(
        &self,
        field: &str,
        r: &SecretKeyRef,
        file: &str,
    ) -> Result<PathBuf, LocalError> {
        let text = self
            .m
            .secret(field, &r.name, &r.key)
            .map_err(|e| self.bad(e))?;
        let path = self.dir.join(file);
        write(&path, &text, true).map_err(LocalError::Setup)?;
        Ok(path)
    }
}

/// Writes the gateway's files, renders its config once per pod and starts the sidecars.
pub(super) async fn start(
    state: &State,
    m: &Manifests,
    gw: &EdgeGateway,
    platform: &Platform,
    any_ports: bool,
) -> Result<Vec<LocalPod>, LocalError> {
    let certs = &gw.spec.certificates;
    let g = Gateway {
        state,
        m,
        gw,
        name: gw.name_any(),
        dir: state.dir.join(gw.name_any()),
        life: lifetime(certs.duration_hours, certs.renew_before_hours),
    };
    let (server, client) = certificates(&g)?;
    let mut c: SidecarConfig = render(&gw.spec, &g.name).map_err(|e| g.bad(e))?;
    c.logging.format = LogFormat::Text;
    server_tls(&g, &mut c, &server)?;
    let try_lines = credentials(&g, &mut c)?;
    lua_files(&g, &mut c)?;
    if c.upstream.take().is_some() {
        tracing::warn!(gateway = %g.name, "local mode runs no upstream app container; spec.upstream ignored");
    }
    tunnel(&g, &mut c, platform, &client)?;
    mqtt(&g, &mut c, platform, &client)?;

    let pods = pod_count(&gw.spec).max(1) as u32;
    let mut out = Vec::new();
    for ordinal in 0..pods {
        out.push(start_pod(&g, &c, ordinal, any_ports, &try_lines).await?);
    }
    Ok(out)
}

/// The server and tunnel client certificates: from the Secrets the spec names, else issued
/// from the local CA (server) and the local tunnel CA (client).
fn certificates(g: &Gateway<'_>) -> Result<(CertFiles, CertFiles), LocalError> {
    let spec = &g.gw.spec;
    let names = Names::new(g.gw, "cluster.local");
    let mut dns = names.server_dns_names();
    dns.push("localhost".into());
    let issue = |stem: &str, common_name: &str, names: &[String], usage: Usage, issuer| {
        g.state
            .leaf(
                LeafRequest {
                    sub: &g.name,
                    stem,
                    common_name,
                    names,
                    usage,
                    issuer,
                    algorithm: spec.certificates.key_algorithm,
                    lifetime: g.life,
                },
                now(),
            )
            .map_err(LocalError::Setup)
    };
    let server = match &spec.server.tls_secret_name {
        Some(secret) => {
            let u = UserTls {
                field: "spec.server.tlsSecretName",
                secret,
                format: spec.server.tls_secret_format,
                passphrase: spec
                    .server
                    .tls_key_passphrase_secret
                    .as_ref()
                    .map(|r| ("spec.server.tlsKeyPassphraseSecret", r)),
            };
            tls_secret(g.m, &u, &g.dir.join("server-tls")).map_err(|e| g.bad(e))?
        }
        None => issue(
            "server",
            &names.service(),
            &dns,
            Usage::Server,
            NamespaceCa::Gateway,
        )?,
    };
    let client = match &spec.platform.client_certificate.secret_name {
        Some(secret) => {
            let c = &spec.platform.client_certificate;
            let u = UserTls {
                field: "spec.platform.clientCertificate.secretName",
                secret,
                format: c.secret_format,
                passphrase: c
                    .key_passphrase_secret
                    .as_ref()
                    .map(|r| ("spec.platform.clientCertificate.keyPassphraseSecret", r)),
            };
            tls_secret(g.m, &u, &g.dir.join("client-tls")).map_err(|e| g.bad(e))?
        }
        None => issue(
            "client",
            &names.client_common_name(),
            &[],
            Usage::Client,
            NamespaceCa::Tunnel,
        )?,
    };
    Ok((server, client))
}

/// Points the server's TLS at the certificate files and the client CA.
fn server_tls(
    g: &Gateway<'_>,
    c: &mut SidecarConfig,
    server: &CertFiles,
) -> Result<(), LocalError> {
    let Some(tls) = c.server.tls.as_mut() else {
        return Ok(());
    };
    tls.cert = server.cert.clone();
    tls.key = server.key.clone();
    tls.key_passphrase_file = server.passphrase.clone();
    tls.client_ca = match (&g.gw.spec.server.client_ca, tls.client_auth) {
        (_, ClientAuthMode::Off) => None,
        (Some(src), _) => {
            let text =
                g.m.file_source("spec.server.clientCa", src)
                    .map_err(|e| g.bad(e))?;
            let path = g.dir.join("client-ca.crt");
            write(&path, &text, false).map_err(LocalError::Setup)?;
            Some(path)
        }
        (None, _) => Some(g.state.ca_file()),
    };
    // The rendered config names the pod's mount paths; here the pins are files of their own.
    let pins = &g.gw.spec.server.pinned_client_certificates;
    if tls.client_ca.is_some() && g.gw.spec.server.trust() == ClientTrust::Pinned {
        tls.client_ca = None;
    }
    if !tls.pinned_peers.is_empty() {
        let mut files = Vec::with_capacity(pins.len());
        for (i, src) in pins.iter().enumerate() {
            let field = format!("spec.server.pinnedClientCertificates[{i}]");
            let text = g.m.file_source(&field, src).map_err(|e| g.bad(e))?;
            let path = g.dir.join(format!("pinned-client-{i}.crt"));
            write(&path, &text, false).map_err(LocalError::Setup)?;
            files.push(path);
        }
        tls.pinned_peers = files;
    }
    Ok(())
}

/// Basic users (given, or a generated password kept in a 0600 file) and OAuth consumers;
/// returns curl lines for the user (`PORT` to be filled in).
fn credentials(g: &Gateway<'_>, c: &mut SidecarConfig) -> Result<Vec<String>, LocalError> {
    let spec = &g.gw.spec;
    let setup = LocalError::Setup;
    let mut try_lines = Vec::new();
    if let Some(b) = c.auth.basic.as_mut() {
        let users = g.dir.join("basic-users");
        match spec
            .server
            .basic_auth
            .as_ref()
            .and_then(|b| b.users_secret.as_ref())
        {
            Some(r) => {
                g.secret_file("spec.server.basicAuth.usersSecret", r, "basic-users")?;
            }
            None => {
                // Generated once and kept, like the operator's Secret; the password is in a
                // 0600 file, never printed.
                let pw_file = g.dir.join("basic-password");
                if !pw_file.exists() || !users.exists() {
                    let (password, users_line) =
                        generate_basic_credentials().map_err(|e| setup(e.to_string()))?;
                    write(&pw_file, &password, true).map_err(setup)?;
                    write(&users, &users_line, true).map_err(setup)?;
                }
                try_lines.push(format!(
                    "curl --cacert {} -u {BASIC_USER}:\"$(cat {})\" https://localhost:PORT/things",
                    g.state.ca_file().display(),
                    pw_file.display()
                ));
            }
        }
        b.users_file = users;
    }
    if let Some(o) = c.auth.oauth.as_mut() {
        if let Some(r) = spec.server.oauth.as_ref().map(|o| &o.consumers_secret) {
            o.credentials_file = g.secret_file(
                "spec.server.oauth.consumersSecret",
                r,
                "oauth-consumers.yaml",
            )?;
        }
    }
    Ok(try_lines)
}

/// Writes each template's script where the config points.
fn lua_files(g: &Gateway<'_>, c: &mut SidecarConfig) -> Result<(), LocalError> {
    let sources = lua_sources(g.m, g.gw).map_err(|e| g.bad(e))?;
    for t in c.lua.templates.iter_mut() {
        let path = g.dir.join("lua").join(format!("{}.lua", t.name));
        write(
            &path,
            sources.get(&t.name).map_or("", String::as_str),
            false,
        )
        .map_err(LocalError::Setup)?;
        t.file = path;
    }
    Ok(())
}

/// The tunnel: app key file, platform URL, client certificate, platform verification.
fn tunnel(
    g: &Gateway<'_>,
    c: &mut SidecarConfig,
    platform: &Platform,
    client: &CertFiles,
) -> Result<(), LocalError> {
    let Some(t) = c.tunnel.as_mut() else {
        return Ok(());
    };
    let spec = &g.gw.spec;
    let setup = LocalError::Setup;
    if let Some(file) = credential_file(g)? {
        t.app_key_file = file;
    }
    if let Some(r) = spec
        .platform
        .proxy
        .as_ref()
        .and_then(|p| p.credentials_secret.as_ref())
    {
        let file = g.secret_file(
            "spec.platform.proxy.credentialsSecret",
            r,
            "proxy-credentials",
        )?;
        if let Some(p) = t.proxy.as_mut() {
            p.credentials_file = Some(file);
        }
    }
    t.url = platform
        .url(PlatformProtocol::AlwaysOn)
        .ok_or_else(|| setup("no AlwaysOn platform started".into()))?;
    t.client_cert = Some(client_cert(client));
    t.timing.startup_jitter_ms = 0;
    if platform.external.is_none() {
        // The local platform is on this machine's loopback: no proxy in between, no other
        // address to fail over to.
        t.proxy = None;
        t.failover_urls.clear();
    }
    t.server = verification(g, platform)?;
    Ok(())
}

/// The MQTT connection: the broker's URL, the password file, client certificate, broker
/// verification.
fn mqtt(
    g: &Gateway<'_>,
    c: &mut SidecarConfig,
    platform: &Platform,
    client: &CertFiles,
) -> Result<(), LocalError> {
    let Some(mq) = c.mqtt.as_mut() else {
        return Ok(());
    };
    let setup = LocalError::Setup;
    mq.password_file = credential_file(g)?;
    mq.url = platform
        .url(PlatformProtocol::Mqtt)
        .ok_or_else(|| setup("no MQTT broker started".into()))?;
    mq.client_cert = Some(client_cert(client));
    mq.server = verification(g, platform)?;
    Ok(())
}

/// The platform credential (app key or MQTT password) written where the pod would mount it.
fn credential_file(g: &Gateway<'_>) -> Result<Option<PathBuf>, LocalError> {
    let p = &g.gw.spec.platform;
    p.credential()
        .map(|(field, r)| g.secret_file(field, r, CredentialMount::of(p.protocol).file))
        .transpose()
}

fn client_cert(client: &CertFiles) -> ClientCert {
    ClientCert {
        cert: client.cert.clone(),
        key: client.key.clone(),
        key_passphrase_file: client.passphrase.clone(),
    }
}

/// How the platform is verified: by the local CA when local mode started it, else as
/// `spec.platform.serverVerification` says (its files copied into the state directory).
fn verification(g: &Gateway<'_>, platform: &Platform) -> Result<ServerVerification, LocalError> {
    if platform.external.is_none() {
        return Ok(ServerVerification {
            ca: Some(g.state.ca_file()),
            ..Default::default()
        });
    }
    let v = &g.gw.spec.platform.server_verification;
    let copy = |field: &str, src, file: &str| -> Result<PathBuf, LocalError> {
        let path = g.dir.join(file);
        let text = g.m.file_source(field, src).map_err(|e| g.bad(e))?;
        write(&path, &text, false).map_err(LocalError::Setup)?;
        Ok(path)
    };
    let mut out = ServerVerification {
        insecure_skip_verify: v.insecure == Some(true),
        criteria: v.criteria.clone(),
        ..Default::default()
    };
    if let Some(src) = &v.ca {
        out.ca = Some(copy(
            "spec.platform.serverVerification.ca",
            src,
            "platform-ca.crt",
        )?);
    }
    if let Some(src) = &v.pinned {
        out.pinned = Some(copy(
            "spec.platform.serverVerification.pinned",
            src,
            "platform-pinned.crt",
        )?);
    }
    if let Some(src) = &v.anchor {
        out.anchor = Some(copy(
            "spec.platform.serverVerification.anchor",
            src,
            "platform-anchor.crt",
        )?);
    }
    Ok(out)
}

/// Starts the sidecar of pod `ordinal` with its own ports, shard and queue directory.
async fn start_pod(
    g: &Gateway<'_>,
    c: &SidecarConfig,
    ordinal: u32,
    any_ports: bool,
    try_lines: &[String],
) -> Result<LocalPod, LocalError> {
    let spec = &g.gw.spec;
    let setup = LocalError::Setup;
    let names = Names::new(g.gw, "cluster.local");
    let pod = format!("{}-{ordinal}", names.statefulset());
    let mut pc = pod_config(spec, &names, ordinal, c);
    pc.server.listen = if ordinal == 0 && !any_ports {
        free_or_any(spec.server.port)
    } else {
        SocketAddr::from(([127, 0, 0, 1], 0))
    };
    pc.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let queue = match (pc.tunnel.as_mut(), pc.mqtt.as_mut()) {
        (Some(t), _) => Some(&mut t.queue),
        (None, Some(m)) => Some(&mut m.queue),
        (None, None) => None,
    };
    if let Some(q) = queue.filter(|q| q.dir.is_some()) {
        q.dir = Some(g.dir.join("queue").join(&pod));
    }
    pc.validate()
        .map_err(|e| g.bad(format!("rendered config for {pod}: {e}")))?;
    let devices = pc
        .simulation
        .as_ref()
        .map_or(0, |s| s.shard_range().len() as u32);
    let sidecar = edgeway_sidecar::start(pc)
        .await
        .map_err(|e| setup(format!("{pod}: {e}")))?;
    let port = sidecar.server_addr.port().to_string();
    let mut lines: Vec<String> = try_lines.iter().map(|l| l.replace("PORT", &port)).collect();
    if c.auth.methods.contains(&AuthMethodName::Mtls) {
        let dev = g
            .state
            .leaf(
                LeafRequest {
                    sub: "devices",
                    stem: "device-1",
                    common_name: "device-1",
                    names: &[],
                    usage: Usage::Client,
                    issuer: NamespaceCa::Gateway,
                    algorithm: spec.certificates.key_algorithm,
                    lifetime: g.life,
                },
                now(),
            )
            .map_err(setup)?;
        lines.push(format!(
            "curl --cacert {} --cert {} --key {} https://localhost:{port}/things",
            g.state.ca_file().display(),
            dev.cert.display(),
            dev.key.display()
        ));
    }
    Ok(LocalPod {
        gateway: g.name.clone(),
        pod,
        sidecar,
        devices,
        try_lines: lines,
    })
}

/// Writes a user-provided `kubernetes.io/tls` Secret's `tls.crt`/`tls.key` into `dir`.
/// A user-supplied TLS Secret of the manifests: its name, key format and passphrase.
struct UserTls<'a> {
    field: &'a str,
    secret: &'a str,
    format: KeyFormat,
    passphrase: Option<(&'a str, &'a SecretKeyRef)>,
}

fn tls_secret(m: &Manifests, u: &UserTls<'_>, dir: &Path) -> Result<CertFiles, String> {
    let passphrase = match u.passphrase {
        Some((field, r)) => {
            let text = m.secret(field, &r.name, &r.key)?;
            let file = dir.join("passphrase");
            write(&file, text.lines().next().unwrap_or_default(), true)?;
            Some(file)
        }
        None => None,
    };
    let files = match u.format {
        KeyFormat::Pem => {
            let files = CertFiles {
                cert: dir.join("tls.crt"),
                key: dir.join("tls.key"),
                passphrase,
            };
            write(&files.cert, m.secret(u.field, u.secret, "tls.crt")?, false)?;
            write(&files.key, m.secret(u.field, u.secret, "tls.key")?, true)?;
            files
        }
        KeyFormat::Pkcs12 => {
            let bundle = dir.join("keystore.p12");
            write(
                &bundle,
                m.secret_bytes(u.field, u.secret, "keystore.p12")?,
                true,
            )?;
            CertFiles {
                cert: bundle.clone(),
                key: bundle,
                passphrase,
            }
        }
    };
    Ok(files)
}
