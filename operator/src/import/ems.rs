//! `config.json` of an Edge MicroServer, key by key. Each group's keys are walked as they are
//! in the file, so a key this importer does not know is reported too, never dropped.

use super::report::Fate::{self, Mapped, NotNeeded, Unsupported};
use super::{jsonc, Draft, ImportError};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

const FILE: &str = "config.json";

/// Where values come from, for errors and relative file paths.
struct Src<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Src<'_> {
    fn err(&self, key: &str, message: impl std::fmt::Display) -> ImportError {
        let last = key
            .rsplit(['.', ']', '['])
            .find(|s| !s.is_empty() && !s.chars().all(|c| c.is_ascii_digit()));
        ImportError::at(
            self.path,
            jsonc::line_of(self.text, last.unwrap_or(key)),
            format!("{key}: {message}"),
        )
    }
    fn str<'v>(&self, key: &str, v: &'v Value) -> Result<&'v str, ImportError> {
        v.as_str()
            .ok_or_else(|| self.err(key, format!("expected a string, found {}", kind(v))))
    }
    fn num(&self, key: &str, v: &Value) -> Result<u64, ImportError> {
        v.as_u64().ok_or_else(|| {
            self.err(
                key,
                format!("expected a non-negative integer, found {}", kind(v)),
            )
        })
    }
    fn bool(&self, key: &str, v: &Value) -> Result<bool, ImportError> {
        v.as_bool()
            .ok_or_else(|| self.err(key, format!("expected true or false, found {}", kind(v))))
    }
    fn obj<'v>(&self, key: &str, v: &'v Value) -> Result<&'v Map<String, Value>, ImportError> {
        v.as_object()
            .ok_or_else(|| self.err(key, format!("expected an object, found {}", kind(v))))
    }
    fn arr<'v>(&self, key: &str, v: &'v Value) -> Result<&'v Vec<Value>, ImportError> {
        v.as_array()
            .ok_or_else(|| self.err(key, format!("expected an array, found {}", kind(v))))
    }
    /// A file named in the config: relative paths are relative to `config.json`'s directory.
    fn file(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        match self.path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_owned(),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The gateway name of `auto_bind` (the entry with `"gateway": true`).
pub fn gateway_name(config: &Value) -> Option<String> {
    config
        .get("auto_bind")?
        .as_array()?
        .iter()
        .find(|b| b.get("gateway").and_then(Value::as_bool) == Some(true))?
        .get("name")?
        .as_str()
        .map(str::to_owned)
}

/// Maps every key of `config` into `d`.
pub fn map(d: &mut Draft, path: &Path, text: &str, config: &Value) -> Result<(), ImportError> {
    let src = Src { path, text };
    let root = config
        .as_object()
        .ok_or_else(|| ImportError::at(path, 1, "the top level must be a JSON object"))?;
    let group = |key: &str| root.get(key);
    // The URL needs three groups; read them first.
    let encryption = match group("ws_connection").and_then(|w| w.get("encryption")) {
        Some(v) => src.str("ws_connection.encryption", v)?.to_owned(),
        None => "ssl".into(),
    };
    let resource = match group("resource") {
        Some(v) => src.str("resource", v)?.to_owned(),
        None => "/Thingworx/WS".into(),
    };
    for (key, value) in root {
        match key.as_str() {
            "ws_servers" => ws_servers(d, &src, value, &resource)?,
            "resource" => d
                .report
                .add(FILE, key, Mapped("the path of `spec.platform.url`".into())),
            "appKey" => {
                let v = src.str(key, value)?;
                let name = d.secret(("app-key", "appKey"), v, "appKey", "platform.appKey");
                d.report.add(
                    FILE,
                    key,
                    Mapped(format!(
                        "Secret `{name}` key `appKey` (`spec.platform.appKey`)"
                    )),
                );
            }
            "http_server" => http_server(d, &src, value)?,
            "ws_connection" => ws_connection(d, &src, value, &encryption)?,
            "proxy" => proxy(d, &src, value)?,
            "offline_msg_store" => offline(d, &src, value)?,
            "certificates" => certificates(d, &src, value)?,
            "auto_bind" => auto_bind(d, &src, value)?,
            "logger" => whole_group(d, key, value, &|| {
                NotNeeded(
                "the sidecar logs structured lines to stdout (`kubectl logs`); its level is the sidecar's `logging.level`".into())
            }),
            "fips" => {
                let on = value
                    .get("enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                whole_group(d, key, value, &|| {
                    if on {
                        Unsupported("the sidecar's TLS (rustls with ring) is not FIPS 140 validated; run where FIPS is not required, or keep the EMS for those devices".into())
                    } else {
                        NotNeeded("FIPS mode is off".into())
                    }
                })
            }
            "tunnel" => whole_group(d, key, value, &|| {
                Unsupported(
                "remote-access tunnels (VNC/SSH through the platform) are not implemented; use `kubectl port-forward` or a VPN to reach devices".into())
            }),
            "file" => whole_group(d, key, value, &|| {
                Unsupported(
                "the EMS file repository and transfers are not implemented; serve files from an upstream app behind the sidecar (`spec.upstream`)".into())
            }),
            other => d.report.add(FILE, other, Fate::unknown(FILE)),
        }
    }
    if root.get("ws_servers").is_none() {
        return Err(ImportError::at(
            path,
            1,
            "ws_servers: missing; the gateway needs a platform to connect to",
        ));
    }
    if root.get("appKey").is_none() {
        let name = d.secret(("app-key", "appKey"), "AES:", "appKey", "platform.appKey");
        d.report.actions.pop();
        d.report.actions.push(format!(
            "`config.json` has no `appKey` (the EMS may keep it in a file): create Secret `{name}` key `appKey`."
        ));
    }
    platform_trust_fallback(d);
    Ok(())
}

/// Reports every key of a group (recursively) with one fate.
fn whole_group(d: &mut Draft, key: &str, value: &Value, fate: &dyn Fn() -> Fate) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                whole_group(d, &format!("{key}.{k}"), v, fate);
            }
        }
        _ => d.report.add(FILE, key, fate()),
    }
}

fn ws_servers(
    d: &mut Draft,
    src: &Src<'_>,
    value: &Value,
    resource: &str,
) -> Result<(), ImportError> {
    let servers = src.arr("ws_servers", value)?;
    if servers.is_empty() {
        return Err(src.err(
            "ws_servers",
            "empty; the gateway needs a platform to connect to",
        ));
    }
    let mut urls = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let at = format!("ws_servers[{i}]");
        let field = if i == 0 {
            "`spec.platform.url`".to_owned()
        } else {
            format!("`spec.platform.failoverUrls[{}]`", i - 1)
        };
        let (mut host, mut port) = (None, 443);
        for (k, v) in src.obj(&at, s)? {
            let key = format!("{at}.{k}");
            match k.as_str() {
                "host" => host = Some(src.str(&key, v)?.to_owned()),
                "port" => port = src.num(&key, v)?,
                _ => {
                    d.report.add(FILE, key, Fate::unknown(FILE));
                    continue;
                }
            }
            d.report.add(FILE, key, Mapped(field.clone()));
        }
        let host = host.ok_or_else(|| src.err(&at, "no host"))?;
        let port =
            u16::try_from(port).map_err(|_| src.err(&format!("{at}.port"), "out of range"))?;
        urls.push(format!("wss://{host}:{port}{resource}"));
    }
    d.set("platform.url", json!(urls[0]));
    if urls.len() > 1 {
        d.set("platform.failoverUrls", json!(urls[1..]));
    }
    Ok(())
}

fn http_server(d: &mut Draft, src: &Src<'_>, value: &Value) -> Result<(), ImportError> {
    let m = src.obj("http_server", value)?;
    let (mut user, mut password) = (None, None);
    let (mut cert, mut key) = (None, None);
    for (k, v) in m {
        let key_path = format!("http_server.{k}");
        let fate = match k.as_str() {
            "host" => NotNeeded("the sidecar listens on the pod's addresses; devices use the gateway's Service".into()),
            "port" => {
                let port = src.num(&key_path, v)?;
                if (1024..=65535).contains(&port) {
                    d.set("server.port", json!(port));
                    Mapped("`spec.server.port`".into())
                } else {
                    Unsupported(format!("{port} is privileged or invalid: the pod runs as non-root, so `spec.server.port` stays 8443; map the old port on the Service or load balancer in front"))
                }
            }
            "ssl" => {
                if src.bool(&key_path, v)? {
                    Mapped("always on: the sidecar serves HTTPS only".into())
                } else {
                    d.report.actions.push("`http_server.ssl` was false: devices must now use `https://`.".into());
                    Unsupported("plain HTTP is not served; the sidecar is HTTPS only (devices switch to https://)".into())
                }
            }
            "certificate" => {
                cert = Some(src.str(&key_path, v)?.to_owned());
                Mapped("Secret `<gateway>-server-tls` key `tls.crt` (`spec.server.tlsSecretName`)".into())
            }
            "private_key" => {
                key = Some(src.str(&key_path, v)?.to_owned());
                Mapped("Secret `<gateway>-server-tls` key `tls.key` (`spec.server.tlsSecretName`)".into())
            }
            "passphrase" => {
                let name = d.secret(("server-key-passphrase", "passphrase"), src.str(&key_path, v)?, &key_path, "server.tlsKeyPassphraseSecret");
                Mapped(format!("Secret `{name}` key `passphrase` (`spec.server.tlsKeyPassphraseSecret`)"))
            }
            "authenticate" => {
                if src.bool(&key_path, v)? {
                    Mapped("`spec.server.authMethods: [basic]`".into())
                } else {
                    Unsupported("the sidecar always authenticates clients: basic auth with a generated password (Secret `<gateway>-basic-auth`) unless users are given".into())
                }
            }
            "user" => {
                user = Some(src.str(&key_path, v)?.to_owned());
                Mapped("Secret `<gateway>-basic-users` key `users` (`spec.server.basicAuth.usersSecret`)".into())
            }
            "password" => {
                password = Some(src.str(&key_path, v)?.to_owned());
                Mapped("Secret `<gateway>-basic-users` key `users`, argon2-hashed (`spec.server.basicAuth.usersSecret`)".into())
            }
            "content_read_timeout" => NotNeeded("the sidecar bounds every request with its own header, body and idle timeouts".into()),
            "ports_to_try" => NotNeeded("a pod's port is its own; nothing else takes it".into()),
            "max_clients" => NotNeeded("the sidecar limits concurrent connections itself (sidecar `server.maxConnections`)".into()),
            "use_default_certificate" => NotNeeded("every gateway gets its own server certificate from the namespace CA".into()),
            _ => Fate::unknown(FILE),
        };
        d.report.add(FILE, key_path, fate);
    }
    d.set("server.authMethods", json!(["basic"]));
    match (user, password) {
        (Some(u), Some(p)) if p.starts_with("AES:") => {
            let name = format!("{}-basic-users", d.name);
            d.commands.push(format!(
                "htpasswd -nbB {u} '<plaintext of http_server.password>' > users && kubectl create secret generic {name}{} --from-file=users",
                d.ns_flag()
            ));
            d.report.actions.push(format!("`http_server.password` is encrypted (`AES:...`): create Secret `{name}` key `users` (see `secrets-to-create.sh`)."));
            d.set(
                "server.basicAuth.usersSecret",
                json!({"name": name, "key": "users"}),
            );
        }
        (Some(u), Some(p)) => {
            let line = hash_user(&u, &p).map_err(|e| src.err("http_server.password", e))?;
            d.secret(
                ("basic-users", "users"),
                &line,
                "http_server.user/password",
                "server.basicAuth.usersSecret",
            );
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(src.err(
                "http_server",
                "user and password come together; one is missing",
            ));
        }
        (None, None) => {}
    }
    match (cert, key) {
        (Some(c), Some(k)) => tls_secret(
            d,
            src,
            "server-tls",
            &c,
            &k,
            "http_server",
            "server.tlsSecretName",
            "server.tlsSecretFormat",
        ),
        (None, None) => Ok(()),
        _ => Err(src.err(
            "http_server",
            "certificate and private_key come together; one is missing",
        )),
    }
}

/// An htpasswd line with an argon2id hash (the memory-hard default: a person's password,
/// unlike the operator's generated ones, may be guessable).
fn hash_user(user: &str, password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    if user.contains(':') {
        return Err(format!("user {user:?} contains ':'"));
    }
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| e.to_string())?;
    Ok(format!("{user}:{hash}\n"))
}

/// A certificate and key from files into a Secret (PEM, or a `.p12` keystore), or the command
/// that creates it when the files are not here.
#[allow(clippy::too_many_arguments)]
fn tls_secret(
    d: &mut Draft,
    src: &Src<'_>,
    suffix: &str,
    cert: &str,
    key: &str,
    group: &str,
    name_field: &str,
    format_field: &str,
) -> Result<(), ImportError> {
    let name = format!("{}-{suffix}", d.name);
    d.set(name_field, json!(name));
    let (cert_path, key_path) = (src.file(cert), src.file(key));
    if key.ends_with(".p12") || key.ends_with(".pfx") {
        d.set(format_field, json!("pkcs12"));
        d.commands.push(format!(
            "kubectl create secret generic {name}{} --from-file=keystore.p12={}",
            d.ns_flag(),
            key_path.display()
        ));
        d.report.actions.push(format!("`{group}` uses a PKCS#12 key file: create Secret `{name}` from it (see `secrets-to-create.sh`)."));
        return Ok(());
    }
    match (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        (Ok(c), Ok(k)) => {
            for (what, text, p) in [("certificate", &c, &cert_path), ("key", &k, &key_path)] {
                if !text.contains("-----BEGIN ") {
                    return Err(ImportError::file(
                        p,
                        format!("{group} {what}: not a PEM file"),
                    ));
                }
            }
            let s = d.secrets.entry(name).or_default();
            s.insert("tls.crt".into(), c);
            s.insert("tls.key".into(), k);
        }
        _ => {
            d.commands.push(format!(
                "kubectl create secret tls {name}{} --cert={} --key={}",
                d.ns_flag(),
                cert_path.display(),
                key_path.display()
            ));
            d.report.actions.push(format!(
                "`{group}` names {} and {}, not found here: create Secret `{name}` from them (see `secrets-to-create.sh`).",
                cert_path.display(),
                key_path.display()
            ));
        }
    }
    Ok(())
}

fn ws_connection(
    d: &mut Draft,
    src: &Src<'_>,
    value: &Value,
    encryption: &str,
) -> Result<(), ImportError> {
    let m = src.obj("ws_connection", value)?;
    for (k, v) in m {
        let key = format!("ws_connection.{k}");
        let seconds = |ms: u64| ms.div_ceil(1000).max(1);
        let fate = match k.as_str() {
            "encryption" => match encryption {
                "ssl" | "tls" => Mapped("always on: the tunnel is `wss://` (TLS)".into()),
                other => {
                    d.report.actions.push(format!("`ws_connection.encryption` was {other:?}: the platform must accept TLS (`wss://`)."));
                    Unsupported(format!("{other:?}: the tunnel is TLS only; enable TLS on the platform's AlwaysOn endpoint"))
                }
            },
            "ping_rate" => {
                d.set("platform.keepAlive.intervalSeconds", json!(seconds(src.num(&key, v)?)));
                Mapped("`spec.platform.keepAlive.intervalSeconds` (ms → s)".into())
            }
            "pingpong_timeout" => {
                d.set("platform.keepAlive.timeoutSeconds", json!(seconds(src.num(&key, v)?)));
                Mapped("`spec.platform.keepAlive.timeoutSeconds` (ms → s)".into())
            }
            "compression" => {
                d.set("platform.compression", json!(src.bool(&key, v)?));
                Mapped("`spec.platform.compression`".into())
            }
            "verbose" => NotNeeded("frame-level logs come from the sidecar's `logging.level: debug`".into()),
            "binary_mode" => NotNeeded("the tunnel always speaks the AlwaysOn binary protocol".into()),
            "msg_timeout" => NotNeeded("the sidecar times requests out per the AlwaysOn protocol's own timeouts".into()),
            "connect_period" | "duty_cycle" => Unsupported("duty-cycled connections are not implemented: the tunnel stays connected (the offline queue covers outages)".into()),
            "connect_on_demand" => Unsupported("connect-on-demand is not implemented: the tunnel stays connected".into()),
            "message_idle_time" => NotNeeded("idle connections are kept alive by `spec.platform.keepAlive`".into()),
            "max_msg_size" | "message_chunk_size" | "max_frame_size" => NotNeeded("message and chunk sizes are negotiated with the platform at connect (sidecar `tunnel.chunkSize`, 8192)".into()),
            "max_messages" => NotNeeded("in-flight messages are bounded by the sidecar's acknowledgement window; queued ones by `spec.platform.offlineQueue.size`".into()),
            "connect_timeout" | "connect_retry_interval" | "max_connect_delay" | "connect_retries" => NotNeeded("reconnects back off exponentially with jitter, forever (sidecar `tunnel.timing`)".into()),
            "max_threads" => NotNeeded("the sidecar is asynchronous; no thread pool to size".into()),
            "socket_read_timeout" | "frame_read_timeout" | "ssl_read_timeout" => NotNeeded("dead connections are found by the keep-alive (`spec.platform.keepAlive`)".into()),
            _ => Fate::unknown(FILE),
        };
        d.report.add(FILE, key, fate);
    }
    Ok(())
}

fn proxy(d: &mut Draft, src: &Src<'_>, value: &Value) -> Result<(), ImportError> {
    let m = src.obj("proxy", value)?;
    let get = |k: &str| m.get(k);
    let host = get("host").map(|v| src.str("proxy.host", v)).transpose()?;
    let port = get("port").map(|v| src.num("proxy.port", v)).transpose()?;
    let user = get("user").map(|v| src.str("proxy.user", v)).transpose()?;
    let password = get("password")
        .map(|v| src.str("proxy.password", v))
        .transpose()?;
    for k in m.keys() {
        let key = format!("proxy.{k}");
        let fate = match k.as_str() {
            "host" | "port" => Mapped("`spec.platform.proxy.address` (`host:port`)".into()),
            "user" | "password" => Mapped("Secret `<gateway>-proxy` key `credentials` (`user:password`, `spec.platform.proxy.credentialsSecret`)".into()),
            _ => Fate::unknown(FILE),
        };
        d.report.add(FILE, key, fate);
    }
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        d.set(
            "platform.proxy.address",
            json!(format!("{host}:{}", port.unwrap_or(3128))),
        );
        if let (Some(u), Some(p)) = (user, password) {
            let value = if p.starts_with("AES:") {
                p.to_owned()
            } else {
                format!("{u}:{p}")
            };
            d.secret(
                ("proxy", "credentials"),
                &value,
                "proxy.password",
                "platform.proxy.credentialsSecret",
            );
        }
    }
    Ok(())
}

fn offline(d: &mut Draft, src: &Src<'_>, value: &Value) -> Result<(), ImportError> {
    let m = src.obj("offline_msg_store", value)?;
    for (k, v) in m {
        let key = format!("offline_msg_store.{k}");
        let fate = match k.as_str() {
            "enabled" => {
                if src.bool(&key, v)? {
                    Mapped("`spec.platform.offlineQueue` (always on)".into())
                } else {
                    Unsupported("the offline queue cannot be turned off; it is in memory unless `persistence` is set".into())
                }
            }
            "directory" => {
                src.str(&key, v)?;
                if d.get("platform.offlineQueue.persistence.size").is_none() {
                    d.set("platform.offlineQueue.persistence.size", json!("1Gi"));
                }
                Mapped(
                    "`spec.platform.offlineQueue.persistence` (a PersistentVolumeClaim per pod)"
                        .into(),
                )
            }
            "max_size" | "max_file_storage" => {
                // The EMS's bound is the store directory's bytes (default 65535); ours counts
                // the queued records and needs three times that on the volume.
                let bytes = src.num(&key, v)?.max(1024);
                d.set("platform.offlineQueue.maxBytes", json!(bytes));
                d.set(
                    "platform.offlineQueue.persistence.size",
                    json!(format!("{}Mi", (3 * bytes).div_ceil(1 << 20).max(1))),
                );
                Mapped(format!(
                    "`spec.platform.offlineQueue.maxBytes: {bytes}`, and `persistence.size` three times that (the log, its dead lines, a compaction's copy)"
                ))
            }
            _ => Fate::unknown(FILE),
        };
        d.report.add(FILE, key, fate);
    }
    Ok(())
}

fn certificates(d: &mut Draft, src: &Src<'_>, value: &Value) -> Result<(), ImportError> {
    let m = src.obj("certificates", value)?;
    let flag = |k: &str, default: bool| -> Result<bool, ImportError> {
        m.get(k)
            .map(|v| src.bool(&format!("certificates.{k}"), v))
            .transpose()
            .map(|b| b.unwrap_or(default))
    };
    let validate = flag("validate", true)?;
    let self_signed = flag("allow_self_signed", false)?;
    let (mut client_cert, mut key_file) = (None, None);
    for (k, v) in m {
        let key = format!("certificates.{k}");
        let fate = match k.as_str() {
            "validate" if !validate => {
                if d.allow_insecure {
                    d.set("platform.serverVerification.insecure", json!(true));
                    Mapped("`spec.platform.serverVerification.insecure: true` (--allow-insecure; logged at every connect)".into())
                } else {
                    d.report.actions.push("`certificates.validate` was false: the manifest verifies the platform. Supply its CA (ConfigMap `<gateway>-platform-ca` key `ca.crt`) or its self-signed certificate, or re-run with `--allow-insecure`.".into());
                    Unsupported("not carried over without --allow-insecure: the platform's certificate is verified".into())
                }
            }
            "validate" => Mapped("verification on (`spec.platform.serverVerification`)".into()),
            "allow_self_signed" if self_signed => Mapped("`spec.platform.serverVerification.anchor`: the platform's self-signed certificate from `cert_chain` as the trust anchor".into()),
            "allow_self_signed" => Mapped("self-signed platform certificates refused (the default)".into()),
            "cert_chain" if !validate && d.allow_insecure => NotNeeded("verification is off (`validate: false`, --allow-insecure)".into()),
            "cert_chain" => {
                let files: Vec<String> = match v {
                    Value::String(s) => vec![s.clone()],
                    other => src.arr(&key, other)?.iter().enumerate()
                        .map(|(i, f)| src.str(&format!("{key}[{i}]"), f).map(str::to_owned))
                        .collect::<Result<_, _>>()?,
                };
                platform_ca(d, src, &files, self_signed)
            }
            "client_cert" => {
                client_cert = Some(src.str(&key, v)?.to_owned());
                Mapped("Secret `<gateway>-platform-client` (`spec.platform.clientCertificate.secretName`)".into())
            }
            "key_file" => {
                key_file = Some(src.str(&key, v)?.to_owned());
                Mapped("Secret `<gateway>-platform-client` (`spec.platform.clientCertificate.secretName`, `secretFormat`)".into())
            }
            "key_passphrase" => {
                let name = d.secret(("platform-key-passphrase", "passphrase"), src.str(&key, v)?, &key, "platform.clientCertificate.keyPassphraseSecret");
                Mapped(format!("Secret `{name}` key `passphrase` (`spec.platform.clientCertificate.keyPassphraseSecret`)"))
            }
            "validation_criteria" => {
                criteria(d, src, v)?;
                continue;
            }
            _ => Fate::unknown(FILE),
        };
        d.report.add(FILE, key, fate);
    }
    match (client_cert, key_file) {
        (Some(c), Some(k)) => tls_secret(
            d,
            src,
            "platform-client",
            &c,
            &k,
            "certificates",
            "platform.clientCertificate.secretName",
            "platform.clientCertificate.secretFormat",
        )?,
        (None, None) => {}
        (Some(c), None) if c.ends_with(".p12") || c.ends_with(".pfx") => tls_secret(
            d,
            src,
            "platform-client",
            &c,
            &c,
            "certificates",
            "platform.clientCertificate.secretName",
            "platform.clientCertificate.secretFormat",
        )?,
        _ => {
            return Err(src.err(
                "certificates",
                "client_cert and key_file come together; one is missing",
            ))
        }
    }
    if self_signed && d.get("platform.serverVerification.anchor").is_none() {
        d.report.actions.push("`certificates.allow_self_signed` without `cert_chain`: supply the platform's self-signed certificate as ConfigMap `<gateway>-platform-ca` key `ca.crt` (it becomes the trust anchor).".into());
    }
    Ok(())
}

/// `cert_chain` files into ConfigMap `<gateway>-platform-ca` key `ca.crt`: the CA bundle, or
/// with `allow_self_signed` the trust anchor.
fn platform_ca(d: &mut Draft, src: &Src<'_>, files: &[String], self_signed: bool) -> Fate {
    let name = format!("{}-platform-ca", d.name);
    let field = if self_signed { "anchor" } else { "ca" };
    d.set(
        &format!("platform.serverVerification.{field}"),
        json!({"configMapName": name, "key": "ca.crt"}),
    );
    let mut bundle = String::new();
    let mut missing = Vec::new();
    for f in files {
        let p = src.file(f);
        match std::fs::read_to_string(&p) {
            Ok(t) if t.contains("-----BEGIN CERTIFICATE-----") => bundle.push_str(&t),
            _ => missing.push(p.display().to_string()),
        }
    }
    if missing.is_empty() && !bundle.is_empty() {
        d.config_maps
            .entry(name.clone())
            .or_default()
            .insert("ca.crt".into(), bundle);
    } else {
        d.commands.push(format!(
            "cat {} > ca.crt && kubectl create configmap {name}{} --from-file=ca.crt",
            files
                .iter()
                .map(|f| src.file(f).display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            d.ns_flag()
        ));
        d.report.actions.push(format!(
            "`certificates.cert_chain` names {} (not found here or not PEM certificates): create ConfigMap `{name}` key `ca.crt` from them (see `secrets-to-create.sh`).",
            missing.join(", ")
        ));
    }
    Mapped(format!(
        "ConfigMap `{name}` key `ca.crt` (`spec.platform.serverVerification.{field}`)"
    ))
}

/// `validation_criteria` names → `serverVerification.criteria`.
fn criteria(d: &mut Draft, src: &Src<'_>, value: &Value) -> Result<(), ImportError> {
    for (k, v) in src.obj("certificates.validation_criteria", value)? {
        let key = format!("certificates.validation_criteria.{k}");
        let target = match k.as_str() {
            "Cert_Common_Name" => Some("subject.commonName"),
            "Cert_Organization" => Some("subject.organization"),
            "Cert_Organizational_Name" | "Cert_Organizational_Unit" => {
                Some("subject.organizationalUnit")
            }
            "CA_Cert_Common_Name" => Some("issuer.commonName"),
            "CA_Cert_Organization" => Some("issuer.organization"),
            "CA_Cert_Organizational_Name" | "CA_Cert_Organizational_Unit" => {
                Some("issuer.organizationalUnit")
            }
            _ => None,
        };
        let fate = match target {
            Some(t) => {
                let s = src.str(&key, v)?;
                if s.is_empty() {
                    NotNeeded("empty: no requirement".into())
                } else {
                    d.set(
                        &format!("platform.serverVerification.criteria.{t}"),
                        json!(s),
                    );
                    Mapped(format!("`spec.platform.serverVerification.criteria.{t}`"))
                }
            }
            None => Fate::unknown(FILE),
        };
        d.report.add(FILE, key, fate);
    }
    Ok(())
}

fn auto_bind(d: &mut Draft, src: &Src<'_>, value: &Value) -> Result<(), ImportError> {
    for (i, b) in src.arr("auto_bind", value)?.iter().enumerate() {
        let at = format!("auto_bind[{i}]");
        let m = src.obj(&at, b)?;
        let gateway = m
            .get("gateway")
            .map(|v| src.bool(&format!("{at}.gateway"), v))
            .transpose()?
            .unwrap_or(false);
        for (k, v) in m {
            let key = format!("{at}.{k}");
            let fate = match k.as_str() {
                "name" if gateway => {
                    d.set("platform.gatewayName", json!(src.str(&key, v)?));
                    Mapped("`spec.platform.gatewayName`".into())
                }
                "name" => NotNeeded("the gateway binds every Lua thing it runs (`spec.lua.things`) itself; a thing bound here without one is a remote thing of another resource server".into()),
                "gateway" => Mapped("marks the `spec.platform.gatewayName` entry".into()),
                "host" | "port" | "path" | "protocol" | "timeout" | "user" | "password" => NotNeeded("the sidecar is the thing's resource server itself; no address or credentials to reach it".into()),
                _ => Fate::unknown(FILE),
            };
            d.report.add(FILE, key, fate);
        }
    }
    Ok(())
}

/// Without any platform trust setting (the EMS then trusts its built-in CA list), the manifest
/// names ConfigMap `<gateway>-platform-ca` for the platform's CA and the report asks for it.
fn platform_trust_fallback(d: &mut Draft) {
    let v = d.get("platform.serverVerification");
    let set = v.and_then(Value::as_object).is_some_and(|m| {
        ["ca", "anchor", "pinned", "insecure"]
            .iter()
            .any(|k| m.contains_key(*k))
    });
    if !set {
        let name = format!("{}-platform-ca", d.name);
        d.set(
            "platform.serverVerification.ca",
            json!({"configMapName": name, "key": "ca.crt"}),
        );
        d.commands.push(format!("kubectl create configmap {name}{} --from-file=ca.crt=<the platform's CA certificate, PEM>", d.ns_flag()));
        d.report.actions.push(format!("No platform CA in `config.json`: create ConfigMap `{name}` key `ca.crt` with the CA that signed the platform's certificate (see `secrets-to-create.sh`)."));
    }
}
