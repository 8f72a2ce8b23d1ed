//! Events a thing fires (as an EMS takes them on `POST /Thingworx/Things/{t}/Events/{e}`):
//! checked against the things that run here and handed to the platform tunnel's outbox, which
//! keeps them until the platform acknowledges them, as it does property updates.

use serde_json::{Map, Value};

use super::Registry;
use crate::lua::{now_ms, EventSink, FiredEvent, ThingError};

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
    /// Sets where fired events go (the tunnel, once, at start): for these calls and for
    /// `me:fireEvent` in templates.
    pub fn set_event_sink(&self, sink: EventSink) {
        self.lua.set_event_sink(sink);
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
        let fired = self.lua.fire_event(FiredEvent {
            thing: thing.to_owned(),
            event: event.to_owned(),
            data,
            time_ms: now_ms(),
        });
        if fired {
            Ok(())
        } else {
            Err(FireError::NoTunnel)
        }
    }
}
