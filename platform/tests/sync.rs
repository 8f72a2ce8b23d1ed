//! What the platform does after a BIND, seen from the wire by an edge that behaves as the C SDK
//! does: it answers `GetMetadata` with JSON in `getMetadataService`'s layout, answers property
//! reads, and fetches `GetPropertySubscriptions` (with its `options` parameter) when notified.

mod common;

use common::*;
use edgeway_protocol::metadata::{ThingMetadata, RESULT_FIELD};
use edgeway_protocol::vtq::{
    read_subscriptions, subscription_options, PropertySubscription, PropertyUpdate, GET_METADATA,
    GET_PROPERTY_SUBSCRIPTIONS, NOTIFY_PROPERTY_UPDATE,
};
use edgeway_protocol::{
    Characteristic, InfoTable, Message, Method, Primitive, Request, StatusCode, StringType,
};
use edgeway_testkit::client::{get, http};
use serde_json::json;

/// Pump1's metadata as an SDK edge sends it: `temp` pushed on VALUE with a threshold,
/// `mode` pushed ALWAYS.
const PUMP_METADATA: &str = r#"{"name":"Pump1","description":"","isSystemObject":false,
"propertyDefinitions":{
 "temp":{"name":"temp","baseType":"NUMBER","aspects":{"pushType":"VALUE","pushThreshold":0.5}},
 "mode":{"name":"mode","baseType":"STRING","aspects":{"pushType":"ALWAYS","pushThreshold":0}}},
"serviceDefinitions":{},"eventDefinitions":{}}"#;

fn metadata_table() -> InfoTable {
    InfoTable::from_primitive(
        RESULT_FIELD,
        Primitive::String(StringType::JSON, PUMP_METADATA.to_owned()),
    )
}

async fn expect_request(e: &mut TlsEdge, name: &str) -> Request {
    let r = match e.recv().await {
        Message::Request(r) => r,
        other => panic!("expected a request for {name}, got {other:?}"),
    };
    assert_eq!(r.characteristic_name, name, "{r:?}");
    assert_eq!(r.entity_name, "Pump1");
    r
}

/// Answers the sync of one BIND of Pump1 with the SDK layout; returns the properties read.
async fn answer_sync(e: &mut TlsEdge) -> Vec<String> {
    let m = expect_request(e, GET_METADATA).await;
    assert_eq!(
        (m.method, m.characteristic),
        (Method::Post, Characteristic::Services)
    );
    e.send(Message::reply_to(
        &m,
        StatusCode::SUCCESS,
        Some(metadata_table()),
    ))
    .await;
    let mut read = Vec::new();
    loop {
        let r = match e.recv().await {
            Message::Request(r) => r,
            other => panic!("expected a request, got {other:?}"),
        };
        if r.characteristic_name == NOTIFY_PROPERTY_UPDATE {
            e.send(Message::reply_to(&r, StatusCode::SUCCESS, None))
                .await;
            return read;
        }
        assert_eq!(
            (r.method, r.characteristic),
            (Method::Get, Characteristic::Properties)
        );
        let value = match r.characteristic_name.as_str() {
            "temp" => Primitive::Number(21.5),
            "mode" => Primitive::string("auto"),
            other => panic!("read of an undefined property {other}"),
        };
        let name = r.characteristic_name.clone();
        e.send(Message::reply_to(
            &r,
            StatusCode::SUCCESS,
            Some(InfoTable::from_primitive(name.as_str(), value)),
        ))
        .await;
        read.push(name);
    }
}

/// `GetPropertySubscriptions` as the SDK calls it (with `options`), after a notification.
async fn fetch_subscriptions(e: &mut TlsEdge) -> Vec<PropertySubscription> {
    let id = e.id();
    let msg = Message::invoke_service(
        id,
        "Pump1",
        GET_PROPERTY_SUBSCRIPTIONS,
        Some(subscription_options()),
    );
    let r = e.call(msg).await;
    assert_eq!(r.status, StatusCode::SUCCESS);
    let mut rows = read_subscriptions(r.content.as_ref().unwrap());
    rows.sort_by(|a, b| a.edge_name.cmp(&b.edge_name));
    rows
}

fn row(rows: &[PropertySubscription], name: &str) -> (Option<String>, Option<f64>) {
    let r = rows
        .iter()
        .find(|r| r.edge_name == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows:?}"));
    (r.push_type.clone(), r.push_threshold)
}

#[tokio::test]
async fn a_bind_is_followed_by_metadata_reads_of_missing_values_and_a_notification() {
    let s = Setup::new("sync-bind");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    let r = e.bind_only(Some(("GW", "sdk")), &["Pump1"]).await;
    assert_eq!(r.status, StatusCode::SUCCESS);
    let mut read = answer_sync(&mut e).await;
    read.sort();
    assert_eq!(
        read,
        ["mode", "temp"],
        "every value the platform lacked is read"
    );

    // REST is complete without a single push: the values read, and the definitions.
    let thing = get(p.rest_addr, "/api/things/Pump1").await.json();
    assert_eq!(thing["properties"]["temp"]["value"], 21.5);
    assert_eq!(thing["properties"]["mode"]["value"], "auto");
    let meta = get(p.rest_addr, "/api/things/Pump1/metadata").await;
    assert_eq!(meta.status, 200);
    let meta: ThingMetadata = serde_json::from_value(meta.json()).unwrap();
    assert_eq!(meta.property_definitions["temp"].base_type, "NUMBER");

    // The SDK's next step: no `*` row, one row per property with the edge's own settings.
    let rows = fetch_subscriptions(&mut e).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(row(&rows, "temp"), (Some("VALUE".into()), Some(0.5)));
    assert_eq!(row(&rows, "mode"), (Some("ALWAYS".into()), Some(0.0)));

    // A push queued on the edge before the read carries an older time: it replaces the value
    // read (stamped at reading) instead of being dropped as a stale duplicate.
    let id = e.id();
    let old = PropertyUpdate {
        name: "temp".into(),
        value: Primitive::Number(20.0),
        time: 1_000,
        quality: "GOOD".into(),
    };
    let r = e
        .call(Message::update_subscribed_property_values(
            id,
            "Pump1",
            &[old],
        ))
        .await;
    assert_eq!(r.status, StatusCode::SUCCESS);
    let thing = get(p.rest_addr, "/api/things/Pump1").await.json();
    assert_eq!(thing["properties"]["temp"]["value"], 20.0);
    assert_eq!(thing["properties"]["temp"]["time"], 1_000);
    p.shutdown().await;
}

#[tokio::test]
async fn a_rebind_reads_only_what_the_platform_does_not_hold() {
    let s = Setup::new("sync-rebind");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind_only(None, &["Pump1"]).await;
    answer_sync(&mut e).await;
    drop(e);
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind_only(None, &["Pump1"]).await;
    let read = answer_sync(&mut e).await;
    assert!(read.is_empty(), "values held are not read again: {read:?}");
    p.shutdown().await;
}

#[tokio::test]
async fn back_to_the_default_undoes_an_earlier_never_row_by_row() {
    let s = Setup::new("sync-never");
    let p = s.start("").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind_only(None, &["Pump1"]).await;
    answer_sync(&mut e).await;
    let rest = p.rest_addr;

    let put = tokio::spawn(async move {
        http(
            rest,
            "PUT",
            "/api/things/Pump1/subscriptions",
            &[],
            r#"[{"edgeName": "temp", "pushType": "NEVER"}]"#,
        )
        .await
    });
    let n = expect_request(&mut e, NOTIFY_PROPERTY_UPDATE).await;
    e.send(Message::reply_to(&n, StatusCode::SUCCESS, None))
        .await;
    assert_eq!(put.await.unwrap().json()["notified"], true);
    let rows = fetch_subscriptions(&mut e).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(row(&rows, "temp").0.as_deref(), Some("NEVER"));

    let delete = tokio::spawn(async move {
        http(rest, "DELETE", "/api/things/Pump1/subscriptions", &[], "").await
    });
    let n = expect_request(&mut e, NOTIFY_PROPERTY_UPDATE).await;
    e.send(Message::reply_to(&n, StatusCode::SUCCESS, None))
        .await;
    assert_eq!(delete.await.unwrap().json()["notified"], true);
    // An SDK edge keeps a property's last push type until a row names it again: the default
    // must name `temp` explicitly, or it would stay NEVER there.
    let rows = fetch_subscriptions(&mut e).await;
    assert_eq!(row(&rows, "temp").0.as_deref(), Some("VALUE"));
    assert_eq!(row(&rows, "mode").0.as_deref(), Some("ALWAYS"));
    assert!(rows.iter().all(|r| r.edge_name != "*"));
    let shown = get(rest, "/api/things/Pump1/subscriptions").await.json();
    assert_eq!(shown.as_array().map(Vec::len), Some(2), "{shown}");
    assert_eq!(json!(shown[1]["edgeName"]), json!("temp"));
    p.shutdown().await;
}

#[tokio::test]
async fn sync_on_bind_can_be_turned_off() {
    let s = Setup::new("sync-off");
    let p = s.start("syncOnBind: false\n").await;
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind_only(None, &["Pump1"]).await;
    // Without definitions the configured `*` row is all the platform can send.
    let rows = fetch_subscriptions(&mut e).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].edge_name, "*");
    p.shutdown().await;
}
