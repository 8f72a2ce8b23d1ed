//! Events a thing fires (as an EMS takes them on `POST /Thingworx/Things/{t}/Events/{e}`):
//! checked against the things that run here and handed to the platform tunnel's outbox, which
//! keeps them until the platform acknowledges them, as it does property updates.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::Registry;
use crate::lua::ThingError;

/// One fired event, as the registry hands it to the tunnel.
#[derive(Debug, Clone, PartialEq)]
pub struct FiredEvent {
    /// Thing that fired it.
    pub thing: String,
    /// Event name.
    pub event: String,
    /// Its data: field name to value (one InfoTable row on the wire).
    pub data: Map<String, Value>,
    /// Firing time, Unix milliseconds.
    pub time_ms: i64,
}

/// Where fired events go: the tunnel's outbox.
pub type EventSink = Box<dyn Fn(FiredEvent) + Send + Sync>;

/// Why an event was not taken.
#[derive(Debug, thiserror::Error)]
pub enum FireError {
    /// No such thing runs here.
    #[error(transparent)]
    Thing(#[from] ThingError),
    /// Nothing would carry it: no platform tunnel is configured.
    #[error("no platform tunnel is configured: events have nowhere to go")]
    NoTunnel,
    /// Names are path segments and log fields: empty or control characters are refused.
    #[error("event name {0:?} is empty, longer than 256 bytes or has control characters")]
    BadName(String),
}

impl Registry {
    /// Sets where fired events go (the tunnel, once, at start).
    pub fn set_event_sink(&self, sink: EventSink) {
        let _ = self.event_sink.set(sink);
    }

    /// Fires `event` of `thing` with `data`; once this returns, the event is in the outbox.
    pub fn fire_event(
        &self,
        thing: &str,
        event: &str,
        data: Map<String, Value>,
    ) -> Result<(), FireError> {
        if self.lua.describe(thing).is_none() && self.device(thing).is_none() {
            return Err(ThingError::UnknownThing(thing.to_owned()).into());
        }
        if event.is_empty() || event.len() > 256 || event.chars().any(char::is_control) {
            return Err(FireError::BadName(event.to_owned()));
        }
        let sink = self.event_sink.get().ok_or(FireError::NoTunnel)?;
        sink(FiredEvent {
            thing: thing.to_owned(),
            event: event.to_owned(),
            data,
            time_ms: now_ms(),
        });
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
