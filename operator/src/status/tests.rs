use super::*;
use k8s_openapi::jiff::Timestamp;

fn t(s: i64) -> Time {
    Time(Timestamp::from_second(s).unwrap())
}

fn obs() -> Observed {
    Observed {
        generation: Some(3),
        config: None,
        certificates: Ok(vec![]),
        replicas: 2,
        ready_replicas: 1,
        devices_desired: 4,
        devices_running: 4,
        connected: None,
        endpoint: "gw.ns.svc:8443".into(),
    }
}

#[test]
fn connected_reflects_what_ready_pods_report() {
    let with = |up, answered, ready| Observed {
        connected: Some(Tunnels {
            up,
            answered,
            ready,
            proxy_failing: 0,
            queue_write_failing: 0,
            credentials_refused: 0,
        }),
        ..obs()
    };
    let c = |o: &Observed| {
        let s = build(None, o, &t(1));
        let c = condition(Some(&s), CONNECTED).unwrap().clone();
        (c.status, c.reason)
    };
    assert_eq!(c(&obs()), ("Unknown".into(), "NotReported".into()));
    assert_eq!(c(&with(2, 2, 2)), ("True".into(), "TunnelsUp".into()));
    assert_eq!(c(&with(1, 2, 2)), ("False".into(), "TunnelDown".into()));
    // A pod that did not answer is not counted as connected.
    assert_eq!(c(&with(1, 1, 2)), ("False".into(), "TunnelDown".into()));
    // A pod whose proxy is unreachable names the proxy as the cause.
    let mut proxy = with(1, 2, 2);
    if let Some(t) = proxy.connected.as_mut() {
        t.proxy_failing = 1;
    }
    assert_eq!(c(&proxy), ("False".into(), "ProxyUnreachable".into()));
    let s = build(None, &proxy, &t(1));
    let msg = &condition(Some(&s), CONNECTED).unwrap().message;
    assert!(
        msg.contains("spec.platform.proxy") && msg.contains("1/2"),
        "{msg}"
    );
    // A refused login names the credential fields, whichever the protocol.
    let mut refused = with(0, 2, 2);
    if let Some(t) = refused.connected.as_mut() {
        t.credentials_refused = 2;
    }
    assert_eq!(c(&refused), ("False".into(), "CredentialsRefused".into()));
    let s = build(None, &refused, &t(1));
    let msg = &condition(Some(&s), CONNECTED).unwrap().message;
    assert!(
        msg.contains("spec.platform.appKey")
            && msg.contains("mqtt.username")
            && msg.contains("0/2"),
        "{msg}"
    );
}

#[test]
fn ready_follows_pods_and_keeps_transition_times() {
    let s1 = build(None, &obs(), &t(100));
    let ready = condition(Some(&s1), READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "PodsNotReady")
    );
    assert_eq!(s1.devices_running, 4);
    // Same observation later: identical status (no write).
    assert_eq!(build(Some(&s1), &obs(), &t(200)), s1);
    let all = Observed {
        ready_replicas: 2,
        ..obs()
    };
    let s2 = build(Some(&s1), &all, &t(300));
    let ready = condition(Some(&s2), READY).unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(ready.last_transition_time, t(300));
    let cfg = condition(Some(&s2), CONFIG_VALID).unwrap();
    assert_eq!(
        cfg.last_transition_time,
        t(100),
        "unchanged condition keeps its time"
    );
    assert_eq!(condition(Some(&s2), CONNECTED).unwrap().status, "Unknown");
}

#[test]
fn invalid_config_is_reported_with_reason_and_message() {
    let bad = Observed {
        config: Some(Problem::new(
            "ReferenceNotFound",
            "ConfigMap ns/scripts not found",
        )),
        ..obs()
    };
    let s = build(None, &bad, &t(1));
    let c = condition(Some(&s), CONFIG_VALID).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "ReferenceNotFound")
    );
    assert!(c.message.contains("scripts"));
    assert_eq!(condition(Some(&s), READY).unwrap().reason, "ConfigInvalid");
    assert_eq!(s.devices_running, 0);
}

#[test]
fn a_failing_queue_volume_is_a_condition_of_its_own() {
    let with = |failing| Observed {
        connected: Some(Tunnels {
            up: 2,
            answered: 2,
            ready: 2,
            proxy_failing: 0,
            queue_write_failing: failing,
            credentials_refused: 0,
        }),
        ..obs()
    };
    let s = build(None, &with(0), &t(1));
    let c = condition(Some(&s), QUEUE_WRITABLE).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Writable"));
    let s = build(Some(&s), &with(1), &t(2));
    let c = condition(Some(&s), QUEUE_WRITABLE).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "QueueWriteFailing")
    );
    assert!(
        c.message.contains("1/2") && c.message.contains("volume"),
        "{}",
        c.message
    );
    assert_eq!(c.last_transition_time, t(2));
    // The tunnel is up all along: the two are told apart.
    assert_eq!(condition(Some(&s), CONNECTED).unwrap().status, "True");
    let s = build(None, &obs(), &t(3));
    assert_eq!(
        condition(Some(&s), QUEUE_WRITABLE).unwrap().status,
        "Unknown"
    );
}
