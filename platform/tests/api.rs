//! The REST API end to end: calls go down a real TLS websocket to a fake edge and come back.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use edgeway_protocol::vtq::{read_subscriptions, PropertyUpdate, NOTIFY_PROPERTY_UPDATE};
use edgeway_protocol::{
    Characteristic, DataShape, FieldDefinition, InfoTable, Message, Method, Primitive, StatusCode,
    WireType,
};
use edgeway_testkit::client::{get, http};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::json;

#[tokio::test]
async fn service_invocation_goes_down_the_tunnel_and_back() {
    let s = Setup::new("invoke");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind(Some(("GW", "sidecar")), &["Calc"]).await;
    let rest = p.rest_addr;
    let call = tokio::spawn(async move {
        http(
            rest,
            "POST",
            "/api/things/Calc/services/Add",
            &[],
            r#"{"a": 2, "b": 3.5, "label": "sum", "skip": null}"#,
        )
        .await
    });
    let req = e.recv_request().await;
    assert_eq!(req.method, Method::Post);
    assert_eq!(req.entity_name, "Calc");
    assert_eq!(req.characteristic, Characteristic::Services);
    assert_eq!(req.characteristic_name, "Add");
    assert_eq!(req.header.session_id, e.session_id);
    let params = req.params.as_ref().unwrap();
    assert_eq!(params.rows.len(), 1);
    assert_eq!(params.get(0, "a"), Some(&Primitive::Number(2.0)));
    assert_eq!(params.get(0, "b"), Some(&Primitive::Number(3.5)));
    assert_eq!(
        params.get(0, "label").and_then(Primitive::as_str),
        Some("sum")
    );
    assert!(params.get(0, "skip").is_none());
    let result = InfoTable::from_primitive("result", Primitive::Number(5.5));
    e.send(Message::reply_to(&req, StatusCode::SUCCESS, Some(result)))
        .await;
    let r = call.await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.json(),
        json!({"status": "SUCCESS", "result": 5.5, "rows": [{"result": 5.5}]})
    );

    // Several fields: `result` is the rows.
    let call =
        tokio::spawn(
            async move { http(rest, "POST", "/api/things/Calc/services/Two", &[], "").await },
        );
    let req = e.recv_request().await;
    assert!(req.params.is_none());
    let mut t = InfoTable::new(DataShape::new(vec![
        FieldDefinition::new("x", WireType::Integer),
        FieldDefinition::new("y", WireType::String),
    ]));
    t.push_row(vec![Primitive::Integer(1), Primitive::string("a")])
        .unwrap();
    e.send(Message::reply_to(&req, StatusCode::SUCCESS, Some(t)))
        .await;
    let r = call.await.unwrap().json();
    assert_eq!(r["result"], json!([{"x": 1, "y": "a"}]));

    let stats = get(rest, "/api/stats").await.json();
    assert_eq!(stats["requestsToEdges"]["invokeService"]["success"], 2);
    let m = String::from_utf8_lossy(&get(p.admin_addr, "/metrics").await.body).into_owned();
    assert!(
        m.contains(
            "edgeway_platform_edge_request_duration_seconds_count{kind=\"invokeService\"} 2"
        ),
        "{m}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn edge_errors_unbound_unknown_and_timeouts_map_to_http() {
    let s = Setup::new("invoke-errors");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind(None, &["Calc", "Gone"]).await;
    let rest = p.rest_addr;

    // The edge's error status comes back as 502 with its name and reason.
    let call = tokio::spawn(async move {
        http(rest, "POST", "/api/things/Calc/services/Missing", &[], "{}").await
    });
    let req = e.recv_request().await;
    let mut reply = Message::reply_to(&req, StatusCode::NOT_FOUND, None);
    if let Message::Response(r) = &mut reply {
        r.reason = Some("no service Missing".into());
    }
    e.send(reply).await;
    let r = call.await.unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["status"], "NOT_FOUND");
    assert_eq!(r.json()["reason"], "no service Missing");

    // No answer in time: 504.
    let r = http(
        rest,
        "POST",
        "/api/things/Calc/services/Slow?timeoutMs=200",
        &[],
        "{}",
    )
    .await;
    assert_eq!(r.status, 504, "{:?}", r.body);
    let _ignored = e.recv_request().await;
    let stats = get(rest, "/api/stats").await.json();
    assert_eq!(stats["requestsToEdges"]["invokeService"]["timeout"], 1);
    assert_eq!(stats["requestsToEdges"]["invokeService"]["edgeError"], 1);

    // Known but unbound: 503 with the exact message; unknown: 404.
    let id = e.id();
    e.call(Message::unbind(id, None, &["Gone"])).await;
    let r = http(rest, "POST", "/api/things/Gone/services/Add", &[], "{}").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json(),
        json!({"error": "thing \"Gone\" is not bound to any gateway"})
    );
    let r = http(rest, "POST", "/api/things/Nobody/services/Add", &[], "{}").await;
    assert_eq!(r.status, 404);
    assert_eq!(get(rest, "/api/things/Nobody").await.status, 404);

    // Bad input: 400.
    let r = http(rest, "POST", "/api/things/Calc/services/Add", &[], "[1,2]").await;
    assert_eq!(r.status, 400);
    let many: serde_json::Map<String, serde_json::Value> =
        (0..70_000).map(|i| (format!("p{i}"), json!(1))).collect();
    let body = serde_json::Value::Object(many).to_string();
    let r = http(rest, "POST", "/api/things/Calc/services/Add", &[], &body).await;
    assert_eq!(r.status, 400, "too many parameters");
    let huge = format!("{{\"x\": \"{}\"}}", "a".repeat(2 << 20));
    let r = http(rest, "POST", "/api/things/Calc/services/Add", &[], &huge).await;
    assert_eq!(r.status, 413);
    let r = http(
        rest,
        "POST",
        "/api/things/Calc/services/Add?timeoutMs=0",
        &[],
        "{}",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        http(rest, "DELETE", "/api/things/Calc", &[], "")
            .await
            .status,
        405
    );
    assert_eq!(get(rest, "/api/nothing").await.status, 404);
    p.shutdown().await;
}

#[tokio::test]
async fn waiting_callers_fail_cleanly_when_the_session_ends() {
    let s = Setup::new("invoke-closed");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind(None, &["Calc"]).await;
    let rest = p.rest_addr;
    let call = tokio::spawn(async move {
        http(rest, "POST", "/api/things/Calc/services/Never", &[], "{}").await
    });
    let _req = e.recv_request().await;
    drop(e);
    let r = call.await.unwrap();
    assert_eq!(r.status, 502, "{:?}", r.body);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("closed before the edge answered"));
    assert_eq!(
        get(rest, "/api/stats").await.json()["requestsToEdges"]["invokeService"]["closed"],
        1
    );
    p.shutdown().await;
}

#[tokio::test]
async fn properties_read_live_and_write_through_the_tunnel() {
    let s = Setup::new("props");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind(None, &["Pump1"]).await;
    let id = e.id();
    let up = [PropertyUpdate::good("setpoint", Primitive::Integer(40), 5)];
    e.call(Message::update_subscribed_property_values(id, "Pump1", &up))
        .await;
    let rest = p.rest_addr;

    let stored = get(rest, "/api/things/Pump1/properties/setpoint")
        .await
        .json();
    assert_eq!(stored["value"], 40);
    assert_eq!(stored["baseType"], "INTEGER");

    let call =
        tokio::spawn(
            async move { get(rest, "/api/things/Pump1/properties/setpoint?live=true").await },
        );
    let req = e.recv_request().await;
    assert_eq!(
        (req.method, req.characteristic),
        (Method::Get, Characteristic::Properties)
    );
    assert_eq!(req.characteristic_name, "setpoint");
    let v = InfoTable::from_primitive("setpoint", Primitive::Integer(41));
    e.send(Message::reply_to(&req, StatusCode::SUCCESS, Some(v)))
        .await;
    let r = call.await.unwrap().json();
    assert_eq!(r["value"], 41);
    assert_eq!(r["live"], true);

    // A write is typed after the stored value (INTEGER here, not NUMBER).
    let call = tokio::spawn(async move {
        http(
            rest,
            "PUT",
            "/api/things/Pump1/properties/setpoint",
            &[],
            r#"{"value": 45}"#,
        )
        .await
    });
    let req = e.recv_request().await;
    assert_eq!(req.method, Method::Put);
    assert_eq!(
        req.params.as_ref().unwrap().get(0, "setpoint"),
        Some(&Primitive::Integer(45))
    );
    e.send(Message::reply_to(&req, StatusCode::SUCCESS, None))
        .await;
    let r = call.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "SUCCESS"}));
    let r = http(
        rest,
        "PUT",
        "/api/things/Pump1/properties/setpoint",
        &[],
        r#"{"value": "high"}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    let r = http(
        rest,
        "PUT",
        "/api/things/Pump1/properties/setpoint",
        &[],
        r#"{"nope": 1}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    p.shutdown().await;
}

#[tokio::test]
async fn subscription_changes_notify_the_edge() {
    let s = Setup::new("notify");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind(None, &["Pump1"]).await;
    let rest = p.rest_addr;
    let call = tokio::spawn(async move {
        http(
            rest,
            "PUT",
            "/api/things/Pump1/subscriptions",
            &[],
            r#"[{"edgeName": "temp", "pushType": "ALWAYS"}]"#,
        )
        .await
    });
    let req = e.recv_request().await;
    assert_eq!(req.characteristic_name, NOTIFY_PROPERTY_UPDATE);
    assert!(req.params.is_none());
    e.send(Message::reply_to(&req, StatusCode::SUCCESS, None))
        .await;
    let r = call.await.unwrap().json();
    assert_eq!(r["notified"], true);
    // What the SDK does next: fetch the subscriptions again.
    let id = e.id();
    let r = e
        .call(Message::get_property_subscriptions(id, "Pump1"))
        .await;
    let subs = read_subscriptions(r.content.as_ref().unwrap());
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].edge_name, "temp");
    assert_eq!(subs[0].push_type.as_deref(), Some("ALWAYS"));
    p.shutdown().await;
}

/// Reads SSE frames until `pred` matches an event; returns (event name, data JSON).
async fn next_event<B>(body: &mut B, buf: &mut String) -> (String, serde_json::Value)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                }
                if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(d).unwrap());
                }
            }
            if let (Some(n), Some(d)) = (name, data) {
                return (n, d);
            }
            continue;
        }
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("no event in time")
            .expect("stream ended")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buf.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
}

#[tokio::test]
async fn event_stream_delivers_gateways_and_updates() {
    let s = Setup::new("sse");
    let p = s.start("").await;
    let tcp = tokio::net::TcpStream::connect(p.rest_addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/api/stream")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut buf = String::new();

    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    let (name, data) = next_event(&mut body, &mut buf).await;
    assert_eq!(name, "gateway");
    assert_eq!(data["event"], "connected");
    assert_eq!(data["sessionId"], e.session_id);
    assert_eq!(data["principal"], APP_KEY_NAME);

    e.bind(None, &["Pump1"]).await;
    let id = e.id();
    let up = [PropertyUpdate::good(
        "temp",
        Primitive::Number(19.5),
        1_700_000_000_000,
    )];
    e.call(Message::update_subscribed_property_values(id, "Pump1", &up))
        .await;
    let (name, data) = next_event(&mut body, &mut buf).await;
    assert_eq!(name, "update");
    assert_eq!(
        data,
        json!({"thing": "Pump1", "property": "temp", "value": 19.5, "time": 1_700_000_000_000i64, "quality": "GOOD"})
    );
    e.ws.close(None).await.unwrap();
    let (name, data) = next_event(&mut body, &mut buf).await;
    assert_eq!(name, "gateway");
    assert_eq!(data["event"], "disconnected");
    p.shutdown().await;
}

#[tokio::test]
async fn slow_stream_readers_are_dropped_not_waited_for() {
    let s = Setup::new("sse-slow");
    let text = s.yaml("").replace(
        "rest:\n  listen: 127.0.0.1:0\n",
        "rest:\n  listen: 127.0.0.1:0\n  streamBuffer: 4\n",
    );
    let p = s.start_yaml(&text).await;
    // An SSE body that is not read while 20 events go out (buffer: 4).
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let resp = edgeway_platform::rest::stream::response(&p.registry, p.metrics.clone(), stop_rx);
    let mut body = resp.into_body();
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind(None, &["Pump1"]).await;
    let ups: Vec<_> = (0..20)
        .map(|i| PropertyUpdate::good("n", Primitive::Integer(i), 1000 + i64::from(i)))
        .collect();
    let id = e.id();
    // Storing never waits for the reader.
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        e.call(Message::update_subscribed_property_values(
            id, "Pump1", &ups,
        )),
    )
    .await
    .expect("store did not block");
    assert!(r.status.is_success());
    // The reader gets its greeting, then its stream ends instead of resuming mid-gap.
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b": connected\n\n");
    let end = tokio::time::timeout(WAIT, body.frame())
        .await
        .expect("stream ended");
    assert!(end.is_none(), "expected the end of the stream, got {end:?}");
    let stats = get(p.rest_addr, "/api/stats").await.json();
    assert_eq!(stats["streamClientsDropped"], 1);
    p.shutdown().await;
}

#[tokio::test]
async fn bearer_token_guards_the_api_and_admin_endpoints_work() {
    let s = Setup::new("token");
    let token_file = s.dir.join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let text = s.yaml("").replace(
        "rest:\n  listen: 127.0.0.1:0\n",
        &format!(
            "rest:\n  listen: 127.0.0.1:0\n  tokenFile: {}\n",
            token_file.display()
        ),
    );
    let p = s.start_yaml(&text).await;
    let r = get(p.rest_addr, "/api/things").await;
    assert_eq!(r.status, 401);
    assert!(r.headers.contains_key("www-authenticate"));
    let r = http(
        p.rest_addr,
        "GET",
        "/api/things",
        &[("authorization", "Bearer wrong")],
        "",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = http(
        p.rest_addr,
        "GET",
        "/api/things",
        &[("authorization", "Bearer s3cret-token")],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([]));

    assert_eq!(get(p.admin_addr, "/healthz").await.status, 200);
    assert_eq!(get(p.admin_addr, "/readyz").await.status, 200);
    let m = get(p.admin_addr, "/metrics").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(text.contains("edgeway_platform_tunnels_up "), "{text}");
    assert!(
        text.contains(
            "edgeway_platform_certificate_not_after_timestamp_seconds{certificate=\"server\"}"
        ),
        "{text}"
    );
    // Every family served is in docs/operations.md's table (name, type, labels) and back.
    if let Err(diff) = edgeway_testkit::metrics_doc::check_scrape("platform", &text) {
        panic!("/metrics and docs/operations.md disagree:\n{diff}");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn plaintext_listener_and_library_tunnel_calls() {
    let s = Setup::new("plain");
    let text = format!(
        "listen: 127.0.0.1:0\nplaintext: true\nauth:\n  appKeysFile: {}\nrest:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n",
        s.keys_file.display()
    );
    let p = s.start_yaml(&text).await;
    let tcp = tokio::net::TcpStream::connect(p.alwayson_addr)
        .await
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/Thingworx/WS", p.alwayson_addr.port());
    let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let mut e = Edge::new(ws);
    assert!(e.auth(APP_KEY).await.status.is_success());
    e.bind(None, &["T"]).await;
    // Library callers use the same tunnel as REST.
    let session = p.registry.session_for("T").unwrap();
    let call = tokio::spawn(async move {
        session
            .invoke_service("T", "Ping", None, Duration::from_secs(5))
            .await
    });
    let req = e.recv_request().await;
    e.send(Message::reply_to(&req, StatusCode::SUCCESS, None))
        .await;
    let r = call.await.unwrap().unwrap();
    assert_eq!(r.status, StatusCode::SUCCESS);
    p.shutdown().await;
}
