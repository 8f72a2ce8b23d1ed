//! `edgeway-operator import ems` on fixtures we wrote in the style of EMS and LSR installations
//! (`tests/fixtures/import`): every key of the complete fixture is accounted for, the manifests
//! are valid and run under `local`, secrets are handled as secrets, and bad input fails naming
//! the file, line and key without leaving partial output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgeway_operator::crd::EdgeGateway;
use edgeway_operator::import::report::Fate;
use edgeway_operator::import::{self, Draft, Inputs};
use edgeway_operator::local::{run, LocalOptions};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

fn inputs(name: &str) -> Inputs {
    let dir = fixture(name);
    Inputs {
        config_json: dir.join("config.json"),
        config_lua: Some(dir.join("config.lua")),
        scripts: dir.join("scripts").exists().then(|| dir.join("scripts")),
        ..Inputs::default()
    }
}

fn temp(name: &str) -> PathBuf {
    // Tests run in parallel: each directory is its own.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("edgeway-import-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A copy of a fixture with `file` replaced, for bad-input cases.
fn variant(name: &str, file: &str, text: &str) -> (PathBuf, Inputs) {
    let dir = temp(&format!("variant-{}", file.replace(['/', '.'], "-")));
    copy_dir(&fixture(name), &dir);
    std::fs::write(dir.join(file), text).unwrap();
    let inputs = Inputs {
        config_json: dir.join("config.json"),
        config_lua: Some(dir.join("config.lua")),
        ..Inputs::default()
    };
    (dir, inputs)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The keys issue 21 lists for `config.json` (group.key; arrays as `[0]`), written out here
/// rather than derived from the importer, so a key it forgets fails the test.
const CONFIG_JSON_KEYS: &[&str] = &[
    "ws_servers[0].host",
    "ws_servers[0].port",
    "resource",
    "appKey",
    "http_server.host",
    "http_server.port",
    "http_server.ssl",
    "http_server.certificate",
    "http_server.private_key",
    "http_server.passphrase",
    "http_server.authenticate",
    "http_server.user",
    "http_server.password",
    "http_server.content_read_timeout",
    "http_server.ports_to_try",
    "http_server.max_clients",
    "http_server.use_default_certificate",
    "ws_connection.encryption",
    "ws_connection.verbose",
    "ws_connection.binary_mode",
    "ws_connection.msg_timeout",
    "ws_connection.ping_rate",
    "ws_connection.pingpong_timeout",
    "ws_connection.connect_period",
    "ws_connection.duty_cycle",
    "ws_connection.message_idle_time",
    "ws_connection.max_msg_size",
    "ws_connection.message_chunk_size",
    "ws_connection.max_frame_size",
    "ws_connection.max_messages",
    "ws_connection.connect_on_demand",
    "ws_connection.connect_timeout",
    "ws_connection.connect_retry_interval",
    "ws_connection.max_threads",
    "ws_connection.max_connect_delay",
    "ws_connection.socket_read_timeout",
    "ws_connection.frame_read_timeout",
    "ws_connection.ssl_read_timeout",
    "ws_connection.connect_retries",
    "proxy.host",
    "proxy.port",
    "proxy.user",
    "proxy.password",
    "offline_msg_store.enabled",
    "offline_msg_store.directory",
    "offline_msg_store.max_size",
    "certificates.validate",
    "certificates.allow_self_signed",
    "certificates.cert_chain",
    "certificates.client_cert",
    "certificates.key_file",
    "certificates.key_passphrase",
    "certificates.validation_criteria.Cert_Common_Name",
    "certificates.validation_criteria.Cert_Organization",
    "certificates.validation_criteria.Cert_Organizational_Name",
    "certificates.validation_criteria.CA_Cert_Common_Name",
    "certificates.validation_criteria.CA_Cert_Organization",
    "certificates.validation_criteria.CA_Cert_Organizational_Name",
    "auto_bind[0].name",
    "auto_bind[0].gateway",
    "auto_bind[1].host",
    "auto_bind[1].port",
    "auto_bind[1].path",
    "auto_bind[1].timeout",
    "auto_bind[1].protocol",
    "auto_bind[1].user",
    "auto_bind[1].password",
];

/// The `config.lua` keys the issue lists, as the complete fixture has them.
const CONFIG_LUA_KEYS: &[&str] = &[
    "scripts.log_level",
    "scripts.log_audit_target",
    "scripts.rap_host",
    "scripts.rap_port",
    "scripts.rap_ssl",
    "scripts.rap_userid",
    "scripts.rap_password",
    "scripts.rap_server_authenticate",
    "scripts.rap_cert_file",
    "scripts.rap_deny_selfsigned",
    "scripts.rap_validate",
    "scripts.script_resource_host",
    "scripts.script_resource_port",
    "scripts.script_resource_ssl",
    "scripts.script_resource_certificate_chain",
    "scripts.script_resource_private_key",
    "scripts.script_resource_passphrase",
    "scripts.script_resource_authenticate",
    "scripts.script_resource_userid",
    "scripts.script_resource_password",
    "scripts.script_resource_use_default_certificate",
    "scripts.Meter1.file",
    "scripts.Meter1.template",
    "scripts.Meter1.scanRate",
    "scripts.Meter1.taskRate",
    "scripts.Meter1.site",
    "scripts.Meter2.taskRate",
    "scripts.modbus.file",
];

fn complete() -> Draft {
    import::import(&inputs("complete")).expect("the complete fixture imports")
}

#[test]
fn every_key_of_the_complete_fixture_is_in_the_report() {
    let d = complete();
    for key in CONFIG_JSON_KEYS {
        assert!(
            d.report.get("config.json", key).is_some(),
            "config.json key {key} missing from the report"
        );
    }
    for key in CONFIG_LUA_KEYS {
        assert!(
            d.report.get("config.lua", key).is_some(),
            "config.lua key {key} missing from the report"
        );
    }
    // Groups reported whole, and a key nobody knows, are there too.
    for key in [
        "logger.level",
        "fips.enabled",
        "tunnel.idle_timeout",
        "file.virtual_dirs",
        "future_option",
        "ws_servers[1].host",
        "ws_connection.compression",
    ] {
        assert!(d.report.get("config.json", key).is_some(), "{key}");
    }
    assert!(matches!(
        d.report.get("config.json", "future_option"),
        Some(Fate::Unsupported(_))
    ));
    assert!(matches!(
        d.report.get("config.json", "tunnel.idle_timeout"),
        Some(Fate::Unsupported(_))
    ));
    assert!(
        matches!(d.report.get("config.lua", "scripts.Meter1.site"), Some(Fate::Unsupported(m)) if m.contains("p_data.site"))
    );
    assert!(
        matches!(d.report.get("config.lua", "scripts.Meter2.taskRate"), Some(Fate::Unsupported(m)) if m.contains("5000 ms"))
    );
    assert!(d.report.get("scripts directory", "modbus.lua").is_some());
    let md = d.report.render(&d.name);
    assert!(md.contains("| `ws_connection.ping_rate` | mapped | `spec.platform.keepAlive.intervalSeconds` (ms → s) |"), "{md}");
    assert!(
        md.contains("Secret `plantgateway-basic-users`"),
        "placeholders replaced: {md}"
    );
}

#[test]
fn the_complete_fixture_maps_to_a_valid_gateway() {
    let d = complete();
    assert_eq!(d.name, "plantgateway", "named after auto_bind's gateway");
    let gw: EdgeGateway = serde_json::from_value(d.gateway()).expect("an EdgeGateway");
    let p = &gw.spec.platform;
    assert_eq!(p.url, "wss://twx.example.com:443/Thingworx/WS");
    assert_eq!(
        p.failover_urls,
        vec!["wss://twx-dr.example.com:8443/Thingworx/WS"]
    );
    assert_eq!(p.gateway_name.as_deref(), Some("PlantGateway"));
    assert_eq!(
        (p.keep_alive.interval_seconds, p.keep_alive.timeout_seconds),
        (55, 10)
    );
    assert!(p.compression);
    assert_eq!(
        p.proxy.as_ref().map(|x| x.address.as_str()),
        Some("proxy.example.com:3128")
    );
    assert_eq!(
        p.offline_queue
            .persistence
            .as_ref()
            .map(|x| x.size.as_str()),
        Some("300Mi")
    );
    // The EMS's bound carries over in bytes; the volume holds three times it.
    assert_eq!(p.offline_queue.max_bytes, Some(104_857_600));
    let criteria = serde_json::to_value(&p.server_verification.criteria).unwrap();
    assert_eq!(criteria["subject"]["organizationalUnit"], "IoT");
    assert_eq!(criteria["issuer"]["commonName"], "ThingWorx Platform CA");
    assert!(
        criteria["issuer"].get("organizationalUnit").is_none(),
        "empty criteria are no requirement"
    );
    assert_eq!(gw.spec.server.port, 8000);
    assert_eq!(
        gw.spec.server.tls_secret_name.as_deref(),
        Some("plantgateway-server-tls")
    );
    let things: Vec<(&str, u64)> = gw
        .spec
        .lua
        .things
        .iter()
        .map(|t| (t.name.as_str(), t.scan_rate_ms))
        .collect();
    assert_eq!(things, vec![("Meter1", 1000), ("Meter2", 5000)]);
    let templates = &d.config_maps["plantgateway-templates"];
    assert!(templates["meter.lua"].contains("services.Reset"));
    assert!(d.config_maps["plantgateway-platform-ca"]["ca.crt"].contains("BEGIN CERTIFICATE"));
    edgeway_operator::local::schema::check(&d.gateway()).expect("the CRD schema holds");
}

#[test]
fn secrets_stay_secret_and_encrypted_values_become_commands() {
    let d = complete();
    let all: String = d
        .secrets
        .values()
        .flat_map(|m| m.values())
        .cloned()
        .collect();
    assert!(
        !all.contains("AES:"),
        "no encrypted value is passed off as a secret"
    );
    assert!(
        !all.contains("s3cret-local"),
        "the basic password is hashed"
    );
    let users = &d.secrets["plantgateway-basic-users"]["users"];
    let hash = users.trim().strip_prefix("admin:").expect("user admin");
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let parsed = PasswordHash::new(hash).expect("a PHC hash");
    argon2::Argon2::default()
        .verify_password(b"s3cret-local", &parsed)
        .expect("the password verifies");
    assert!(d.secrets["plantgateway-server-tls"]["tls.key"].contains("PRIVATE KEY"));
    assert!(d.secrets["plantgateway-platform-client"]["tls.crt"].contains("CERTIFICATE"));
    for secret in [
        "plantgateway-app-key",
        "plantgateway-proxy",
        "plantgateway-server-key-passphrase",
        "plantgateway-platform-key-passphrase",
    ] {
        assert!(
            !d.secrets.contains_key(secret),
            "{secret} must not be written with a placeholder"
        );
        assert!(
            d.commands.iter().any(|c| c.contains(secret)),
            "a command creates {secret}"
        );
        assert!(
            d.report.actions.iter().any(|a| a.contains(secret)),
            "an action names {secret}"
        );
    }
    // Written out: secrets.yaml is the owner's only, the rest readable.
    let out = temp("complete-out");
    let files = import::write(&d, &out).expect("written");
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "gateway.yaml",
            "configmaps.yaml",
            "secrets.yaml",
            "secrets-to-create.sh",
            "import-report.md"
        ]
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |f: &str| std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("secrets.yaml"), 0o600);
    assert_eq!(mode("gateway.yaml"), 0o644);
    let yaml = std::fs::read_to_string(out.join("gateway.yaml")).unwrap();
    let back: EdgeGateway =
        serde_saphyr::from_str(yaml.split_once('\n').unwrap().1).expect("YAML parses back");
    assert_eq!(back.spec.lua.things.len(), 2);
    // A second import into the same directory is refused and leaves it as it was.
    let err = import::write(&d, &out).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("gateway.yaml")).unwrap(),
        yaml
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn insecure_settings_need_allow_insecure() {
    let json = std::fs::read_to_string(fixture("minimal/config.json"))
        .unwrap()
        .replace("\"validate\": true", "\"validate\": false");
    let (_, mut inputs) = variant("minimal", "config.json", &json);
    let safe = import::import(&inputs).expect("imports");
    assert!(safe.get("platform.serverVerification.insecure").is_none());
    assert!(safe
        .report
        .actions
        .iter()
        .any(|a| a.contains("--allow-insecure")));
    assert!(matches!(
        safe.report.get("config.json", "certificates.validate"),
        Some(Fate::Unsupported(_))
    ));
    inputs.allow_insecure = true;
    let insecure = import::import(&inputs).expect("imports");
    assert_eq!(
        insecure.get("platform.serverVerification.insecure"),
        Some(&serde_json::json!(true))
    );
}

fn error_of(name: &str, file: &str, text: &str) -> String {
    let (_, inputs) = variant(name, file, text);
    import::import(&inputs)
        .expect_err("bad input is refused")
        .to_string()
}

#[test]
fn bad_input_names_the_file_line_and_key() {
    // Not JSON once comments are gone: the line of the damage.
    let e = error_of(
        "minimal",
        "config.json",
        "// comment\n{\n  \"ws_servers\": [\n  ,\n]}\n",
    );
    assert!(
        e.contains("config.json:4:") && e.contains("not JSON"),
        "{e}"
    );
    // A key of the wrong type.
    let e = error_of("minimal", "config.json", "{\n \"ws_servers\": [{\"host\": \"h\", \"port\": 443}],\n \"ws_connection\": {\n  \"ping_rate\": \"55000\"\n }\n}\n");
    assert!(e.contains("config.json:4: ws_connection.ping_rate: expected a non-negative integer, found a string"), "{e}");
    // An unterminated block comment.
    let e = error_of("minimal", "config.json", "{\n/* never closed\n}\n");
    assert!(
        e.contains("config.json:2:") && e.contains("never closed"),
        "{e}"
    );
    // A template file missing.
    let e = error_of(
        "minimal",
        "config.lua",
        "scripts.X = { file = \"thing.lua\", template = \"nope\" }\n",
    );
    assert!(
        e.contains("config.lua:1: scripts.X.template: template \"nope\" not found"),
        "{e}"
    );
    // A template that does not compile: its own file and line.
    let e = error_of(
        "minimal",
        "templates/meter.lua",
        "properties.x = {\n  baseType = \n",
    );
    assert!(e.contains("meter.lua:") && e.contains("unexpected"), "{e}");
    // config.lua that is not Lua.
    let e = error_of("minimal", "config.lua", "scripts.a = 1\nscripts.b = = 2\n");
    assert!(e.contains("config.lua:2"), "{e}");
    // A setting that is not data.
    let e = error_of("minimal", "config.lua", "scripts.f = function() end\n");
    assert!(e.contains("scripts.f") && e.contains("function"), "{e}");
}

/// Hostile `config.lua`: it runs in the sidecar's sandbox, so a loop stops at the instruction
/// limit and the functions a sandbox refuses are refused, naming where.
#[test]
fn config_lua_runs_sandboxed() {
    let e = error_of("minimal", "config.lua", "while true do end\n");
    assert!(e.contains("instruction") || e.contains("limit"), "{e}");
    let e = error_of(
        "minimal",
        "config.lua",
        "os.execute(\"touch /tmp/edgeway-pwned\")\n",
    );
    assert!(e.contains("config.lua:1") && e.contains("execute"), "{e}");
    assert!(!Path::new("/tmp/edgeway-pwned").exists());
    let e = error_of(
        "minimal",
        "config.lua",
        "local s = string.rep('x', 64 * 1024 * 1024)\n",
    );
    assert!(e.to_lowercase().contains("memory"), "{e}");
}

#[test]
fn no_partial_output_on_bad_input() {
    let (dir, inputs) = variant(
        "minimal",
        "config.lua",
        "scripts.X = { template = \"nope\" , file = 1 }\n",
    );
    let out = dir.join("out");
    let result = import::import(&inputs).and_then(|d| import::write(&d, &out));
    assert!(result.is_err());
    assert!(!out.exists(), "nothing written");
}

/// The imported minimal installation runs: `local` starts it with its Lua thing and the tunnel
/// connects to the reference platform.
#[tokio::test]
async fn the_imported_gateway_runs_locally() {
    let d = import::import(&inputs("minimal")).expect("imports");
    let out = temp("minimal-out");
    let files = import::write(&d, &out).expect("written");
    let yaml: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "yaml"))
        .collect();
    let state_dir = temp("minimal-state");
    run(LocalOptions {
        files: yaml,
        state_dir,
        platform: None,
        rest_port: 0,
        any_ports: true,
        until_connected: Some(Duration::from_secs(60)),
    })
    .await
    .expect("the imported gateway connects");
    let _ = std::fs::remove_dir_all(&out);
}
