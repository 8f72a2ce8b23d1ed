//! AlwaysOn sessions over real TLS websockets: authentication, binding, pushes, chunking.

mod common;

use std::time::Duration;

use common::*;
use edgeway_protocol::message::AUTH_SESSION_ID;
use edgeway_protocol::vtq::{read_subscriptions, PropertyUpdate};
use edgeway_protocol::{Message, Primitive, StatusCode};
use edgeway_testkit::client::{get, http};
use edgeway_testkit::pki::{client_config, self_signed, Ca};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn right_app_key_gets_a_session_id() {
    let s = Setup::new("auth-ok");
    let p = s.start("").await;
    let mut e = connect(p.alwayson_addr, s.client()).await;
    let r = e.auth(APP_KEY).await;
    assert_eq!(r.status, StatusCode::SUCCESS);
    assert_ne!(r.header.session_id, 0);
    assert_ne!(r.header.session_id, AUTH_SESSION_ID);
    let gws = get(p.rest_addr, "/api/gateways").await.json();
    assert_eq!(gws.as_array().unwrap().len(), 1);
    assert_eq!(gws[0]["principal"], APP_KEY_NAME);
    assert_eq!(gws[0]["sessionId"], r.header.session_id);
    assert!(gws[0]["remoteAddress"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // A key without a name gets a line-number principal.
    let mut e2 = connect(p.alwayson_addr, s.client()).await;
    assert!(e2.auth("other-key-without-name").await.status.is_success());
    let gws = get(p.rest_addr, "/api/gateways").await.json();
    let principals: Vec<_> = gws
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["principal"].clone())
        .collect();
    assert!(
        principals.contains(&json!("appKey@line3")),
        "{principals:?}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn wrong_app_key_is_refused_and_closed() {
    let s = Setup::new("auth-bad");
    let p = s.start("").await;
    let mut e = connect(p.alwayson_addr, s.client()).await;
    let r = e.auth("not-a-key").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.reason.as_deref().unwrap_or_default().contains("invalid"),
        "{r:?}"
    );
    let close = e.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);
    let stats = get(p.rest_addr, "/api/stats").await.json();
    assert_eq!(stats["authFailures"], 1);
    assert_eq!(stats["authFailuresByReason"]["badAppKey"], 1);
    assert_eq!(stats["sessionsActive"], 0);
    let m = get(p.admin_addr, "/metrics").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("edgeway_platform_auth_failures_total{kind=\"badAppKey\"} 1"),
        "{text}"
    );
    assert!(!text.contains("not-a-key"));
    p.shutdown().await;
}

#[tokio::test]
async fn anything_before_auth_is_refused() {
    let s = Setup::new("auth-first");
    let p = s.start("").await;
    let mut e = connect(p.alwayson_addr, s.client()).await;
    e.send(Message::bind(7, None, &["Pump1"])).await;
    let r = e.recv_response().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header.request_id, 7);
    assert_eq!(u16::from(e.expect_close().await.unwrap().code), 1008);
    assert!(get(p.rest_addr, "/api/things")
        .await
        .json()
        .as_array()
        .unwrap()
        .is_empty());
    p.shutdown().await;
}

#[tokio::test]
async fn silence_after_upgrade_times_out() {
    let s = Setup::new("auth-timeout");
    let text = s.yaml("").replace("auth:\n", "auth:\n  timeoutMs: 300\n");
    let p = s.start_yaml(&text).await;
    let mut e = connect(p.alwayson_addr, s.client()).await;
    let started = std::time::Instant::now();
    assert_eq!(u16::from(e.expect_close().await.unwrap().code), 1008);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(
        get(p.rest_addr, "/api/stats").await.json()["authFailuresByReason"]["timeout"],
        1
    );
    p.shutdown().await;
}

#[tokio::test]
async fn other_paths_get_404() {
    let s = Setup::new("path");
    let p = s.start("").await;
    let err = connect_path(p.alwayson_addr, s.client(), "/Thingworx/Other")
        .await
        .err()
        .expect("upgrade refused");
    assert!(err.contains("404"), "{err}");
    p.shutdown().await;
}

#[tokio::test]
async fn client_certificates_from_the_ca_authenticate() {
    let s = Setup::new("mtls");
    let ca_file = s.dir.join("clients-ca.crt");
    std::fs::write(&ca_file, &s.ca.pem).unwrap();
    let text = s
        .yaml("")
        .replace(
            "clientAuth: off\n",
            &format!("clientAuth: required\n  clientCa: {}\n", ca_file.display()),
        )
        .replace("auth:\n", "auth:\n  methods: [clientCert]\n");
    let p = s.start_yaml(&text).await;

    let good = s.ca.client("gateway-7");
    let mut e = connect(p.alwayson_addr, client_config(s.ca.roots(), Some(&good))).await;
    // No app key at all: the certificate is the credential.
    let r = e.auth("").await;
    assert_eq!(r.status, StatusCode::SUCCESS, "{r:?}");
    let gws = get(p.rest_addr, "/api/gateways").await.json();
    assert_eq!(gws[0]["principal"], "gateway-7");
    assert_eq!(gws[0]["clientCert"], "gateway-7");

    // A certificate from another CA never gets past TLS.
    let other = Ca::new("Other CA").client("intruder");
    let err = connect_path(
        p.alwayson_addr,
        client_config(s.ca.roots(), Some(&other)),
        "/Thingworx/WS",
    )
    .await
    .err()
    .expect("refused");
    assert!(
        err.starts_with("tls") || err.starts_with("websocket"),
        "{err}"
    );
    // Nor does no certificate (clientAuth: required).
    assert!(connect_path(p.alwayson_addr, s.client(), "/Thingworx/WS")
        .await
        .is_err());
    let m = String::from_utf8_lossy(&get(p.admin_addr, "/metrics").await.body).into_owned();
    assert!(
        m.contains("edgeway_platform_tls_handshakes_total{kind=\"error\"} 2"),
        "{m}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn require_all_needs_both_key_and_certificate() {
    let s = Setup::new("mtls-all");
    let ca_file = s.dir.join("clients-ca.crt");
    std::fs::write(&ca_file, &s.ca.pem).unwrap();
    let text = s
        .yaml("")
        .replace(
            "clientAuth: off\n",
            &format!("clientAuth: optional\n  clientCa: {}\n", ca_file.display()),
        )
        .replace(
            "auth:\n",
            "auth:\n  methods: [appKey, clientCert]\n  require: all\n",
        );
    let p = s.start_yaml(&text).await;
    let mut no_cert = connect(p.alwayson_addr, s.client()).await;
    let r = no_cert.auth(APP_KEY).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.reason.unwrap().contains("certificate"));
    let cert = s.ca.client("gw-both");
    let mut e = connect(p.alwayson_addr, client_config(s.ca.roots(), Some(&cert))).await;
    assert_eq!(e.auth("wrong").await.status, StatusCode::UNAUTHORIZED);
    let mut e = connect(p.alwayson_addr, client_config(s.ca.roots(), Some(&cert))).await;
    assert_eq!(e.auth(APP_KEY).await.status, StatusCode::SUCCESS);
    let gws = get(p.rest_addr, "/api/gateways").await.json();
    assert_eq!(gws[0]["principal"], APP_KEY_NAME);
    assert_eq!(gws[0]["clientCert"], "gw-both");
    p.shutdown().await;
}

#[tokio::test]
async fn pinned_client_certificate_is_accepted() {
    let s = Setup::new("pinned");
    let pinned = self_signed("pinned-gateway", None);
    let (pin_file, _) = pinned.write(&s.dir, "pinned");
    let text = s
        .yaml("")
        .replace(
            "clientAuth: off\n",
            &format!(
                "clientAuth: required\n  pinnedPeers: [{}]\n",
                pin_file.display()
            ),
        )
        .replace("auth:\n", "auth:\n  methods: [clientCert]\n");
    let p = s.start_yaml(&text).await;
    let mut e = connect(p.alwayson_addr, client_config(s.ca.roots(), Some(&pinned))).await;
    assert_eq!(e.auth("").await.status, StatusCode::SUCCESS);
    let stranger = self_signed("pinned-gateway", None);
    assert!(connect_path(
        p.alwayson_addr,
        client_config(s.ca.roots(), Some(&stranger)),
        "/Thingworx/WS"
    )
    .await
    .is_err());
    p.shutdown().await;
}

#[tokio::test]
async fn bind_then_subscriptions_are_the_star_row() {
    let s = Setup::new("subs");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    let r = e
        .bind(Some(("Gateway1", "EdgewaySidecar")), &["Pump1", "Valve2"])
        .await;
    assert_eq!(r.status, StatusCode::SUCCESS, "{r:?}");
    let id = e.id();
    let r = e
        .call(Message::get_property_subscriptions(id, "Pump1"))
        .await;
    assert_eq!(r.status, StatusCode::SUCCESS);
    let subs = read_subscriptions(r.content.as_ref().unwrap());
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].edge_name, "*");
    assert_eq!(subs[0].push_type.as_deref(), Some(""));
    assert_eq!(subs[0].push_threshold, Some(0.0));
    let things = get(p.rest_addr, "/api/things").await.json();
    assert_eq!(things.as_array().unwrap().len(), 2);
    assert_eq!(things[0]["name"], "Pump1");
    assert_eq!(things[0]["gateway"], "Gateway1");
    assert_eq!(things[0]["connected"], true);
    let gws = get(p.rest_addr, "/api/gateways").await.json();
    assert_eq!(gws[0]["gateway"], "Gateway1");
    assert_eq!(gws[0]["gatewayType"], "EdgewaySidecar");
    assert_eq!(gws[0]["boundThings"], 2);
    // UNBIND removes the binding, the thing stays known.
    let id = e.id();
    assert!(e
        .call(Message::unbind(id, None, &["Valve2"]))
        .await
        .status
        .is_success());
    let t = get(p.rest_addr, "/api/things/Valve2").await.json();
    assert_eq!(t["connected"], false);
    p.shutdown().await;
}

#[tokio::test]
async fn explicit_subscriptions_come_from_the_config() {
    let s = Setup::new("subs-explicit");
    let p = s
        .start("subscriptions:\n  things:\n    Pump1:\n      - edgeName: temp\n        pushType: VALUE\n        pushThreshold: 0.5\n")
        .await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind(None, &["Pump1", "Other"]).await;
    let id = e.id();
    let r = e
        .call(Message::get_property_subscriptions(id, "Pump1"))
        .await;
    let subs = read_subscriptions(r.content.as_ref().unwrap());
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].edge_name, "temp");
    assert_eq!(subs[0].push_type.as_deref(), Some("VALUE"));
    assert_eq!(subs[0].push_threshold, Some(0.5));
    let id = e.id();
    let r = e
        .call(Message::get_property_subscriptions(id, "Other"))
        .await;
    assert!(r.content.unwrap().rows.is_empty());
    p.shutdown().await;
}

#[tokio::test]
async fn pushed_values_are_stored_and_resends_dropped() {
    let s = Setup::new("push");
    let p = s.start("historySize: 3\n").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind(None, &["Pump1"]).await;
    let batch = vec![
        PropertyUpdate::good("temp", Primitive::Number(21.5), 1_700_000_000_000),
        PropertyUpdate {
            name: "running".into(),
            value: Primitive::Boolean(true),
            time: 1_700_000_000_000,
            quality: "UNCERTAIN".into(),
        },
    ];
    let id = e.id();
    let r = e
        .call(Message::update_subscribed_property_values(
            id, "Pump1", &batch,
        ))
        .await;
    assert_eq!(r.status, StatusCode::SUCCESS, "{r:?}");
    let t = get(p.rest_addr, "/api/things/Pump1").await.json();
    assert_eq!(t["connected"], true);
    assert_eq!(
        t["properties"]["temp"],
        json!({"value": 21.5, "time": 1_700_000_000_000i64, "quality": "GOOD", "baseType": "NUMBER"})
    );
    assert_eq!(t["properties"]["running"]["quality"], "UNCERTAIN");
    assert_eq!(t["properties"]["running"]["baseType"], "BOOLEAN");

    // The same batch again (a resend after a lost acknowledgement) stores nothing.
    let id = e.id();
    assert!(e
        .call(Message::update_subscribed_property_values(
            id, "Pump1", &batch
        ))
        .await
        .status
        .is_success());
    // An older value is a duplicate too; same time with a new value is not.
    let late = vec![
        PropertyUpdate::good("temp", Primitive::Number(5.0), 1_600_000_000_000),
        PropertyUpdate::good("temp", Primitive::Number(22.0), 1_700_000_000_000),
        PropertyUpdate::good("temp", Primitive::Number(23.0), 1_700_000_000_100),
        PropertyUpdate::good("temp", Primitive::Number(24.0), 1_700_000_000_200),
    ];
    let id = e.id();
    assert!(e
        .call(Message::update_subscribed_property_values(
            id, "Pump1", &late
        ))
        .await
        .status
        .is_success());
    let stats = get(p.rest_addr, "/api/stats").await.json();
    assert_eq!(stats["updatesStored"], 5);
    assert_eq!(stats["duplicatesDropped"], 3);
    assert_eq!(
        stats["messagesFromEdges"]["updateSubscribedPropertyValues"],
        3
    );
    let v = get(
        p.rest_addr,
        "/api/things/Pump1/properties/temp?history=true",
    )
    .await
    .json();
    assert_eq!(v["value"], 24.0);
    let hist: Vec<_> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["value"].clone())
        .collect();
    assert_eq!(
        hist,
        vec![json!(22.0), json!(23.0), json!(24.0)],
        "history is bounded to 3"
    );
    let m = String::from_utf8_lossy(&get(p.admin_addr, "/metrics").await.body).into_owned();
    assert!(
        m.contains("edgeway_platform_tunnel_updates_total{kind=\"duplicate\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("edgeway_platform_tunnel_updates_total{kind=\"stored\"} 5"),
        "{m}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn pushes_for_things_not_bound_here_are_forbidden() {
    let s = Setup::new("push-unbound");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    let id = e.id();
    let up = [PropertyUpdate::good("temp", Primitive::Number(1.0), 1)];
    let r = e
        .call(Message::update_subscribed_property_values(id, "Nope", &up))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.reason.unwrap().contains("Nope"));
    let id = e.id();
    let r = e
        .call(Message::invoke_service(id, "Nope", "SomethingElse", None))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    p.shutdown().await;
}

#[tokio::test]
async fn first_in_wins_refuses_a_second_binder() {
    let s = Setup::new("first-in");
    let p = s.start("bindPolicy: firstInWins\n").await;
    let mut a = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    let mut b = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    assert!(a.bind(None, &["Pump1"]).await.status.is_success());
    let r = b.bind(None, &["Pump1", "Pump2"]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.reason.as_deref().unwrap().contains("Pump1"), "{r:?}");
    assert!(!r.reason.as_deref().unwrap().contains("Pump2"), "{r:?}");
    let things = p.registry.things();
    assert_eq!(things[0].session_id, Some(a.session_id));
    assert_eq!(things[1].name, "Pump2");
    assert_eq!(things[1].session_id, Some(b.session_id));
    // Once the holder leaves, the name is free.
    drop(a);
    let reg = p.registry.clone();
    eventually("holder gone", || {
        let reg = reg.clone();
        async move { reg.gateways().len() == 1 }
    })
    .await;
    assert!(b.bind(None, &["Pump1"]).await.status.is_success());
    p.shutdown().await;
}

#[tokio::test]
async fn last_in_wins_takes_the_name_over() {
    let s = Setup::new("last-in");
    let p = s.start("bindPolicy: lastInWins\n").await;
    let mut a = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    let mut b = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    assert!(a.bind(None, &["Pump1"]).await.status.is_success());
    assert!(b.bind(None, &["Pump1"]).await.status.is_success());
    assert_eq!(p.registry.things()[0].session_id, Some(b.session_id));
    assert!(p.registry.bound_by(a.session_id).is_empty());
    // The old session can no longer push for it.
    let id = a.id();
    let up = [PropertyUpdate::good("temp", Primitive::Number(1.0), 1)];
    let r = a
        .call(Message::update_subscribed_property_values(id, "Pump1", &up))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    p.shutdown().await;
}

#[tokio::test]
async fn multipart_messages_are_reassembled_both_ways() {
    let s = Setup::new("multipart");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.chunk = 1024;
    e.bind(None, &["Big"]).await;
    let text = "x".repeat(20_000);
    let id = e.id();
    let up = [PropertyUpdate::good(
        "blob",
        Primitive::string(text.clone()),
        10,
    )];
    let msg = Message::update_subscribed_property_values(id, "Big", &up);
    assert!(edgeway_protocol::split(&msg, 1024).unwrap().len() > 10);
    assert!(e.call(msg).await.status.is_success());
    let v = get(p.rest_addr, "/api/things/Big/properties/blob")
        .await
        .json();
    assert_eq!(v["value"].as_str().unwrap().len(), 20_000);

    // Platform → edge: a large parameter table arrives in 8 KiB chunks; the edge reassembles.
    let rest = p.rest_addr;
    let big = "y".repeat(30_000);
    let body = json!({"payload": big}).to_string();
    let call = tokio::spawn(async move {
        http(rest, "POST", "/api/things/Big/services/Echo", &[], &body).await
    });
    let req = e.recv_request().await;
    let got = req
        .params
        .as_ref()
        .unwrap()
        .get(0, "payload")
        .unwrap()
        .as_str()
        .unwrap()
        .len();
    assert_eq!(got, 30_000);
    // Answer with a large result, chunked by the edge.
    let result = edgeway_protocol::InfoTable::from_primitive(
        "result",
        Primitive::string("z".repeat(25_000)),
    );
    e.send(Message::reply_to(&req, StatusCode::SUCCESS, Some(result)))
        .await;
    let r = call.await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["result"].as_str().unwrap().len(), 25_000);
    p.shutdown().await;
}

#[tokio::test]
async fn keep_alive_is_answered_and_session_ids_are_checked() {
    let s = Setup::new("keepalive");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    let id = e.id();
    let r = e.call(Message::keep_alive(id)).await;
    assert_eq!(r.status, StatusCode::SUCCESS);
    assert_eq!(r.header.session_id, e.session_id);
    // A message with someone else's session id is refused, the session stays.
    let id = e.id();
    e.send_raw(&Message::bind(id, None, &["X"]).with_session(e.session_id ^ 1))
        .await;
    let r = e.recv_response().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(p.registry.things().is_empty());
    let id = e.id();
    assert!(e.call(Message::keep_alive(id)).await.status.is_success());
    p.shutdown().await;
}

#[tokio::test]
async fn session_end_marks_things_disconnected_and_keeps_values() {
    let s = Setup::new("disconnect");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind(Some(("GW", "t")), &["Pump1"]).await;
    let id = e.id();
    let up = [PropertyUpdate::good("temp", Primitive::Integer(7), 1_000)];
    e.call(Message::update_subscribed_property_values(id, "Pump1", &up))
        .await;
    e.ws.close(None).await.unwrap();
    let rest = p.rest_addr;
    eventually("thing disconnected", || async move {
        get(rest, "/api/things").await.json()[0]["connected"] == false
    })
    .await;
    let t = get(rest, "/api/things/Pump1").await.json();
    assert_eq!(t["gateway"], "GW");
    assert_eq!(t["properties"]["temp"]["value"], 7);
    assert_eq!(t["properties"]["temp"]["baseType"], "INTEGER");
    assert!(get(rest, "/api/gateways")
        .await
        .json()
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(get(rest, "/api/stats").await.json()["sessionsActive"], 0);
    p.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_sessions_with_going_away() {
    let s = Setup::new("shutdown");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    let stop = tokio::spawn(p.shutdown());
    assert_eq!(u16::from(e.expect_close().await.unwrap().code), 1001);
    stop.await.unwrap();
}

#[tokio::test]
async fn bad_tls_material_names_the_field() {
    let s = Setup::new("bad-cert");
    std::fs::write(&s.cert, "not a certificate").unwrap();
    let config = edgeway_platform::config::PlatformConfig::parse(&s.yaml(""), "t").unwrap();
    let err = edgeway_platform::start(config)
        .await
        .err()
        .expect("start fails");
    let text = err.to_string();
    assert!(
        text.starts_with("tls.cert: no PEM certificate in"),
        "{text}"
    );
}

#[tokio::test]
async fn silent_sessions_are_closed_and_answering_ones_stay() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let s = Setup::new("idle");
    let p = s
        .start("websocket:\n  pingIntervalMs: 100\n  idleTimeoutMs: 350\n")
        .await;
    let mut lively = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    let mut silent = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    // The lively edge keeps reading, so tungstenite answers every ping with a pong.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + std::time::Duration::from_millis(900);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, lively.ws.next()).await {
        match m {
            WsMessage::Ping(_) => pings += 1,
            WsMessage::Close(f) => panic!("lively edge closed: {f:?}"),
            _ => {}
        }
    }
    assert!(pings >= 4, "{pings} pings");
    // The silent one never read, so never answered: it was closed as idle. (Its queued pong
    // replies may hit the already-closed socket first, so the close frame itself may be lost.)
    if let Some(f) = silent.expect_close().await {
        assert_eq!(u16::from(f.code), 1001);
    }
    assert_eq!(p.registry.gateways().len(), 1);
    assert_eq!(p.registry.gateways()[0].session_id, lively.session_id);
    p.shutdown().await;
}

#[tokio::test]
async fn app_keys_file_changes_apply_without_restart() {
    let s = Setup::new("keys-reload");
    let p = s.start("").await;
    let mut e = connect(p.alwayson_addr, s.client()).await;
    assert_eq!(e.auth("rotated-key").await.status, StatusCode::UNAUTHORIZED);
    std::fs::write(&s.keys_file, "plant-b:rotated-key\n").unwrap();
    let mut e = connect(p.alwayson_addr, s.client()).await;
    assert_eq!(e.auth("rotated-key").await.status, StatusCode::SUCCESS);
    assert_eq!(p.registry.gateways()[0].principal, "plant-b");
    let mut e = connect(p.alwayson_addr, s.client()).await;
    assert_eq!(
        e.auth(APP_KEY).await.status,
        StatusCode::UNAUTHORIZED,
        "old key revoked"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn an_undecodable_response_fails_its_request_at_once() {
    let s = Setup::new("bad-response");
    let p = s.start("requestTimeoutMs: 60000\n").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    assert!(e.bind(None, &["Pump1"]).await.status.is_success());
    let rest = p.rest_addr;
    let call = tokio::spawn(async move {
        http(rest, "POST", "/api/things/Pump1/services/Go", &[], "{}").await
    });
    let req = e.recv_request().await;
    let result = edgeway_protocol::InfoTable::from_primitive("result", Primitive::Number(1.0));
    let mut bytes = Message::reply_to(&req, StatusCode::SUCCESS, Some(result))
        .with_session(e.session_id)
        .encode();
    bytes.push(7); // a non-zero byte after a complete message
    e.ws.send(WsMessage::Binary(bytes.into())).await.unwrap();
    // Before, the request waited for its deadline (60 s here) and answered 504.
    let r = call.await.unwrap();
    assert_eq!(r.status, 502, "{:?}", String::from_utf8_lossy(&r.body));
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("undecodable response") && body.contains("trailing"),
        "{body}"
    );
    let metrics = get(p.admin_addr, "/metrics").await;
    assert!(
        String::from_utf8_lossy(&metrics.body)
            .contains("edgeway_platform_edge_messages_undecodable_total{kind=\"trailingBytes\"} 1"),
        "{}",
        String::from_utf8_lossy(&metrics.body)
    );
    p.shutdown().await;
}

#[tokio::test]
async fn pings_carry_a_payload() {
    let s = Setup::new("ping-payload");
    let p = s
        .start("websocket:\n  pingIntervalMs: 50\n  idleTimeoutMs: 60000\n")
        .await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    // Edge SDKs skip zero-length frames and never answer an empty ping.
    let payload = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match e.ws.next().await {
                Some(Ok(WsMessage::Ping(data))) => return data,
                Some(Ok(_)) => continue,
                other => panic!("no ping: {other:?}"),
            }
        }
    })
    .await
    .expect("a ping within 10 s");
    assert_eq!(payload.len(), 8, "{payload:?}");
    p.shutdown().await;
}
