//! Events fired by edges as the C SDK fires them (`twApi_FireEvent`: POST, entity Thing,
//! characteristic EVENTS, the event name, the data as an InfoTable): stored per thing, served
//! in REST and the event feed, counted; resends recognised by the sidecar's `eventTime` header.

mod common;

use common::*;
use edgeway_platform::registry::{Event, EVENT_TIME_HEADER};
use edgeway_protocol::{
    DataShape, FieldDefinition, InfoTable, Message, Primitive, Request, StatusCode, WireType,
};
use edgeway_testkit::client::get;

fn fault(id: u32, thing: &str, text: &str) -> Message {
    let mut data = InfoTable::new(DataShape::new(vec![
        FieldDefinition::new("message", WireType::String),
        FieldDefinition::new("code", WireType::Integer),
    ]));
    data.rows
        .push(vec![Primitive::string(text), Primitive::Integer(7)]);
    Message::fire_event(id, thing, "SteamSensorFault", Some(data))
}

fn with_time(msg: Message, time: i64) -> Message {
    match msg {
        Message::Request(r) => Message::Request(Request {
            headers: vec![(EVENT_TIME_HEADER.to_owned(), time.to_string())],
            ..r
        }),
        other => other,
    }
}

#[tokio::test]
async fn fired_events_are_stored_served_streamed_and_counted() {
    let s = Setup::new("events");
    let p = s.start("").await;
    let mut feed = p.registry.subscribe();
    let mut e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    e.bind(None, &["Steam1"]).await;

    let id = e.id();
    let r = e.call(fault(id, "Steam1", "too hot")).await;
    assert_eq!(r.status, StatusCode::SUCCESS, "{r:?}");
    loop {
        match feed.recv().await.unwrap() {
            Event::Fired(f) => {
                assert_eq!(
                    (f.thing.as_str(), f.event.as_str()),
                    ("Steam1", "SteamSensorFault")
                );
                assert_eq!(f.data["message"], "too hot");
                break;
            }
            _ => continue,
        }
    }

    // The sidecar's resend after a lost acknowledgement carries the same time: kept once.
    for _ in 0..2 {
        let id = e.id();
        let r = e
            .call(with_time(
                fault(id, "Steam1", "valve stuck"),
                1_700_000_000_000,
            ))
            .await;
        assert_eq!(r.status, StatusCode::SUCCESS);
    }
    let events = get(p.rest_addr, "/api/things/Steam1/events").await.json();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[0]["data"],
        serde_json::json!({"message": "too hot", "code": 7})
    );
    assert_eq!(events[1]["time"], 1_700_000_000_000i64);
    assert_eq!(events[1]["data"]["message"], "valve stuck");
    let none = get(p.rest_addr, "/api/things/Steam1/events?event=Other")
        .await
        .json();
    assert_eq!(none, serde_json::json!([]));

    // A thing this session did not bind: refused, not stored.
    let id = e.id();
    let r = e.call(fault(id, "Stranger", "x")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let metrics = get(p.admin_addr, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    for (outcome, n) in [("stored", 2), ("duplicate", 1), ("refused", 1)] {
        let line = format!("events_received_total{{kind=\"{outcome}\"}} {n}");
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
    let stats = get(p.rest_addr, "/api/stats").await.json();
    assert_eq!(stats["eventsStored"], 2);
    p.shutdown().await;
}
