//! Events fired by edges (`POST <thing>/Events/<name>` with the event data as an InfoTable):
//! kept per thing, the newest `eventHistorySize`, and streamed as they arrive.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Event, NotBoundHere, Registry};
use crate::session::now_ms;
use edgeway_protocol::InfoTable;

pub use edgeway_protocol::vtq::EVENT_TIME_HEADER;

/// One stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// Thing that fired it.
    pub thing: String,
    /// Event name.
    pub event: String,
    /// Firing time (edge clock when the edge says, else arrival), Unix ms.
    pub time: i64,
    /// The first row of the event data as a JSON object (`{}` without data).
    pub data: Value,
}

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Kept and streamed.
    Stored,
    /// Equal to one kept (same name, time and data): a resend.
    Duplicate,
}

impl Registry {
    /// Stores an event of `thing`, which session `id` must have bound.
    pub fn store_event(
        &self,
        id: u32,
        thing: &str,
        event: &str,
        time: Option<i64>,
        data: Option<&InfoTable>,
    ) -> Result<EventOutcome, NotBoundHere> {
        let data = data
            .and_then(|t| {
                let row = t.rows.first()?;
                let fields = t.shape.fields.iter().zip(row);
                Some(fields.map(|(f, v)| (f.name.clone(), v.to_json())).collect())
            })
            .map_or_else(|| Value::Object(Map::new()), Value::Object);
        let stored = StoredEvent {
            thing: thing.to_owned(),
            event: event.to_owned(),
            time: time.unwrap_or_else(now_ms),
            data,
        };
        let mut st = self.lock();
        let Some(t) = st.things.get_mut(thing).filter(|t| t.bound_to == Some(id)) else {
            return Err(NotBoundHere(thing.to_owned()));
        };
        if time.is_some() && t.events.contains(&stored) {
            return Ok(EventOutcome::Duplicate);
        }
        if t.events.len() >= self.event_history {
            t.events.pop_front();
        }
        t.events.push_back(stored.clone());
        self.emit(Event::Fired(stored));
        Ok(EventOutcome::Stored)
    }

    /// The kept events of `thing`, oldest first, optionally only those named `name`.
    pub fn events(&self, thing: &str, name: Option<&str>) -> Option<Vec<StoredEvent>> {
        let st = self.lock();
        let t = st.things.get(thing)?;
        Some(
            t.events
                .iter()
                .filter(|e| name.is_none_or(|n| e.event == n))
                .cloned()
                .collect(),
        )
    }
}
