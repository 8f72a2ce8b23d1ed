//! The platform's state: live sessions, thing bindings, stored property values and the event feed.
//!
//! One mutex guards sessions, bindings and values so a binding check and the store it guards
//! happen atomically; critical sections never await. Events go out on a bounded broadcast
//! channel, so a slow reader can never slow the platform down (it lags and is dropped).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use edgeway_protocol::basetype::Quality;
use edgeway_protocol::metadata::ThingMetadata;
use edgeway_protocol::{Primitive, PropertyUpdate, WireType};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::config::{BindPolicy, SubscriptionRow, SubscriptionsConfig};
use crate::metrics::Metrics;
use crate::session::{now_ms, EdgeSession};

mod events;
pub use events::{EventOutcome, StoredEvent, EVENT_TIME_HEADER};

/// One stored value with its time and quality.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyValue {
    /// The value as the edge sent it.
    pub value: Primitive,
    /// The edge's timestamp, epoch milliseconds.
    pub time: i64,
    /// The edge's quality.
    pub quality: Quality,
}

/// JSON form of a stored value: `{value, time, quality, baseType}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValueJson {
    /// The value in ThingWorx REST JSON form.
    pub value: Value,
    /// Epoch milliseconds.
    pub time: i64,
    /// `GOOD`, `BAD`, `UNCERTAIN`, `UNKNOWN`.
    pub quality: Quality,
    /// The wire base type name, e.g. `NUMBER`.
    pub base_type: &'static str,
}

impl PropertyValue {
    /// The JSON form.
    pub fn to_json(&self) -> ValueJson {
        ValueJson {
            value: self.value.to_json(),
            time: self.time,
            quality: self.quality,
            base_type: self.value.wire_type().name(),
        }
    }
}

#[derive(Debug)]
struct Property {
    history: VecDeque<PropertyValue>,
    /// The only value is one the platform read after a BIND ([`Registry::seed`]), stamped
    /// with the time of reading: the next pushed value replaces it whatever its time, since
    /// pushes queued on the edge before the read carry older times and must not be lost.
    seeded: bool,
}

impl Property {
    fn latest(&self) -> Option<&PropertyValue> {
        self.history.back()
    }
}

#[derive(Debug, Default)]
struct Thing {
    gateway: Option<String>,
    bound_to: Option<u32>,
    /// The principal that bound it last: only it may bind the name again while it is kept.
    owner: Option<String>,
    /// Since when no session holds it (for `thingRetentionMs`).
    unbound_at: Option<Instant>,
    properties: BTreeMap<String, Property>,
    last_update: Option<i64>,
    /// What the edge's `GetMetadata` answered at the last BIND.
    metadata: Option<Arc<ThingMetadata>>,
    /// The newest events fired, oldest first.
    events: VecDeque<StoredEvent>,
}

#[derive(Default)]
struct State {
    sessions: BTreeMap<u32, Arc<EdgeSession>>,
    bindings: BTreeMap<u32, BTreeSet<String>>,
    things: BTreeMap<String, Thing>,
    subscriptions: BTreeMap<String, Vec<SubscriptionRow>>,
}

/// An event of the `/api/stream` feed.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A property value was stored.
    Update(UpdateEvent),
    /// A session connected or disconnected.
    Gateway(GatewayEvent),
    /// An edge fired an event.
    Fired(StoredEvent),
}

impl Event {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Update(_) => "update",
            Event::Gateway(_) => "gateway",
            Event::Fired(_) => "event",
        }
    }

    /// The SSE data as JSON.
    pub fn data(&self) -> Value {
        let v = match self {
            Event::Update(u) => serde_json::to_value(u),
            Event::Gateway(g) => serde_json::to_value(g),
            Event::Fired(e) => serde_json::to_value(e),
        };
        v.unwrap_or(Value::Null)
    }
}

/// A stored property value, as streamed.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpdateEvent {
    /// Thing name.
    pub thing: String,
    /// Property name.
    pub property: String,
    /// Value in REST JSON form.
    pub value: Value,
    /// Epoch milliseconds.
    pub time: i64,
    /// Quality.
    pub quality: Quality,
}

/// A session coming or going, as streamed.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayEvent {
    /// `connected` or `disconnected`.
    pub event: &'static str,
    /// The session id.
    pub session_id: u32,
    /// Authenticated principal.
    pub principal: String,
    /// Gateway name announced by BIND, if any.
    pub gateway: Option<String>,
    /// Remote socket address.
    pub remote_address: String,
}

/// A connected session, as `GET /api/gateways` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfo {
    /// Session id.
    pub session_id: u32,
    /// Gateway name announced by BIND, if any.
    pub gateway: Option<String>,
    /// Gateway type announced by BIND, if any.
    pub gateway_type: Option<String>,
    /// Authenticated principal (app key name or certificate identity).
    pub principal: String,
    /// Verified client certificate identity, when one was presented.
    pub client_cert: Option<String>,
    /// Remote socket address.
    pub remote_address: String,
    /// Epoch milliseconds of authentication.
    pub connected_since: i64,
    /// Whether the websocket negotiated permessage-deflate (RFC 7692).
    pub compressed: bool,
    /// Things bound by this session now.
    pub bound_things: usize,
}

/// A thing, as `GET /api/things` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThingSummary {
    /// Thing name.
    pub name: String,
    /// Gateway (name, else principal) of the session that bound it last.
    pub gateway: Option<String>,
    /// Bound to a live session now.
    pub connected: bool,
    /// Session id it is bound to now.
    pub session_id: Option<u32>,
    /// Properties with a stored value.
    pub property_count: usize,
    /// Epoch milliseconds (platform clock) of the last stored value.
    pub last_update: Option<i64>,
}

/// A thing with its properties, as `GET /api/things/{thing}` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThingDetail {
    /// Thing name.
    pub name: String,
    /// Gateway of the session that bound it last.
    pub gateway: Option<String>,
    /// Bound to a live session now.
    pub connected: bool,
    /// Session id it is bound to now.
    pub session_id: Option<u32>,
    /// Epoch milliseconds (platform clock) of the last stored value.
    pub last_update: Option<i64>,
    /// Latest value of each property.
    pub properties: BTreeMap<String, ValueJson>,
}

/// What a BIND did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindOutcome {
    /// Names now bound to the session.
    pub bound: Vec<String>,
    /// Names refused (firstInWins), with the session holding them.
    pub refused: Vec<(String, u32)>,
    /// Names taken from another session (lastInWins), with that session.
    pub taken_over: Vec<(String, u32)>,
    /// Names refused because the session holds its limit of things.
    pub over_limit: Vec<String>,
    /// Names refused because another principal bound them and they are still kept.
    pub owned_elsewhere: Vec<String>,
}

/// What storing a push did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// Values stored.
    pub stored: usize,
    /// Values dropped as duplicates.
    pub duplicates: usize,
}

/// Why a thing has no session to talk to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Never bound nor updated.
    #[error("no thing {0:?}")]
    UnknownThing(String),
    /// Known but not bound to a live session.
    #[error("thing {0:?} is not bound to any gateway")]
    NotBound(String),
}

/// A push for a thing this session has not bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("thing {0:?} is not bound by this session")]
pub struct NotBoundHere(pub String);

/// Sessions, bindings, values and the event feed.
pub struct Registry {
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
    history_size: usize,
    event_history: usize,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("history_size", &self.history_size)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry keeping `history_size` values per property and `event_buffer`
    /// events per stream reader.
    pub fn new(history_size: usize, event_buffer: usize, metrics: Arc<Metrics>) -> Self {
        let (events, _) = broadcast::channel(event_buffer.max(1));
        Self {
            state: Mutex::new(State::default()),
            events,
            history_size: history_size.max(1),
            event_history: history_size.max(1),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, event: Event) {
        // No receivers is fine: nobody is streaming.
        let _ = self.events.send(event);
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Whether a session id is in use.
    pub fn has_session(&self, id: u32) -> bool {
        self.lock().sessions.contains_key(&id)
    }

    /// Registers an authenticated session.
    pub fn add_session(&self, session: Arc<EdgeSession>) {
        let event = GatewayEvent {
            event: "connected",
            session_id: session.id,
            principal: session.principal.clone(),
            gateway: session.gateway_name(),
            remote_address: session.remote.to_string(),
        };
        self.lock().sessions.insert(session.id, session);
        self.emit(Event::Gateway(event));
    }

    /// Removes a session and all its bindings (things stay, disconnected, with their values).
    pub fn remove_session(&self, id: u32) -> Option<Arc<EdgeSession>> {
        let mut st = self.lock();
        let session = st.sessions.remove(&id)?;
        let names = st.bindings.remove(&id).unwrap_or_default();
        let now = Instant::now();
        for n in &names {
            if let Some(t) = st.things.get_mut(n) {
                if t.bound_to == Some(id) {
                    t.bound_to = None;
                    t.unbound_at = Some(now);
                }
            }
        }
        drop(st);
        self.emit(Event::Gateway(GatewayEvent {
            event: "disconnected",
            session_id: id,
            principal: session.principal.clone(),
            gateway: session.gateway_name(),
            remote_address: session.remote.to_string(),
        }));
        Some(session)
    }

    /// Binds `names` to session `id` under `policy`; a session holds at most `limit` things.
    pub fn bind(&self, id: u32, names: &[String], policy: BindPolicy, limit: usize) -> BindOutcome {
        let mut out = BindOutcome::default();
        let mut st = self.lock();
        let gateway = st.sessions.get(&id).map(|s| s.display_gateway());
        let principal = st.sessions.get(&id).map(|s| s.principal.clone());
        for name in names {
            let owner = st.things.get(name).and_then(|t| t.owner.as_ref());
            if owner.is_some_and(|o| Some(o) != principal.as_ref()) {
                out.owned_elsewhere.push(name.clone());
                continue;
            }
            let held = st.bindings.get(&id);
            let count = held.map_or(0, BTreeSet::len);
            if count >= limit && !held.is_some_and(|b| b.contains(name)) {
                out.over_limit.push(name.clone());
                continue;
            }
            let holder = st
                .things
                .get(name)
                .and_then(|t| t.bound_to)
                .filter(|h| *h != id && st.sessions.contains_key(h));
            if let Some(h) = holder {
                match policy {
                    BindPolicy::FirstInWins => {
                        out.refused.push((name.clone(), h));
                        continue;
                    }
                    BindPolicy::LastInWins => {
                        if let Some(b) = st.bindings.get_mut(&h) {
                            b.remove(name);
                        }
                        out.taken_over.push((name.clone(), h));
                    }
                }
            }
            let thing = st.things.entry(name.clone()).or_default();
            thing.bound_to = Some(id);
            thing.unbound_at = None;
            thing.owner.clone_from(&principal);
            thing.gateway.clone_from(&gateway);
            st.bindings.entry(id).or_default().insert(name.clone());
            out.bound.push(name.clone());
        }
        out
    }

    /// Unbinds those of `names` that session `id` holds; returns them.
    pub fn unbind(&self, id: u32, names: &[String]) -> Vec<String> {
        let mut st = self.lock();
        let mut removed = Vec::new();
        for name in names {
            let held = st.bindings.get_mut(&id).is_some_and(|b| b.remove(name));
            if held {
                if let Some(t) = st.things.get_mut(name) {
                    t.bound_to = None;
                    t.unbound_at = Some(Instant::now());
                }
                removed.push(name.clone());
            }
        }
        removed
    }

    /// Forgets the things no session has held for `retention` as of `now`: their values and
    /// which principal bound them (subscription rows, set through the REST API, stay). Returns
    /// how many went.
    pub fn expire(&self, now: Instant, retention: Duration) -> usize {
        let mut st = self.lock();
        let due: Vec<String> = st
            .things
            .iter()
            .filter(|(_, t)| {
                t.bound_to.is_none()
                    && t.unbound_at
                        .is_some_and(|at| now.saturating_duration_since(at) >= retention)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in &due {
            st.things.remove(n);
        }
        due.len()
    }

    /// Names bound to session `id`.
    pub fn bound_by(&self, id: u32) -> Vec<String> {
        self.lock()
            .bindings
            .get(&id)
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Stores pushed values for `thing`, which session `id` must have bound.
    ///
    /// Per property, a value older than the last stored one, or as old and equal, is a
    /// duplicate (a resend after a lost acknowledgement) and is counted, not stored.
    pub fn store(
        &self,
        id: u32,
        thing: &str,
        updates: Vec<PropertyUpdate>,
    ) -> Result<StoreOutcome, NotBoundHere> {
        let mut out = StoreOutcome::default();
        let mut events = Vec::new();
        {
            let mut st = self.lock();
            let Some(t) = st.things.get_mut(thing).filter(|t| t.bound_to == Some(id)) else {
                return Err(NotBoundHere(thing.to_owned()));
            };
            let received = now_ms();
            for u in updates {
                let time = if u.time > 0 { u.time } else { received };
                let value = PropertyValue {
                    value: u.value,
                    time,
                    quality: Quality::parse(&u.quality),
                };
                // Look up before inserting: the name is only copied for a new property.
                if !t.properties.contains_key(&u.name) {
                    t.properties.insert(
                        u.name.clone(),
                        Property {
                            history: VecDeque::new(),
                            seeded: false,
                        },
                    );
                }
                let Some(prop) = t.properties.get_mut(&u.name) else {
                    continue;
                };
                if prop.seeded {
                    prop.seeded = false;
                    prop.history.clear();
                }
                if let Some(last) = prop.latest() {
                    if time < last.time || (time == last.time && value.value == last.value) {
                        out.duplicates += 1;
                        continue;
                    }
                }
                events.push(Event::Update(UpdateEvent {
                    thing: thing.to_owned(),
                    property: u.name,
                    value: value.value.to_json(),
                    time,
                    quality: value.quality,
                }));
                if prop.history.len() >= self.history_size {
                    prop.history.pop_front();
                }
                prop.history.push_back(value);
                out.stored += 1;
            }
            if out.stored > 0 {
                t.last_update = Some(received);
            }
            // Send while still ordered with other stores of this thing.
            for e in events {
                self.emit(e);
            }
        }
        self.metrics.updates_stored(out.stored as u64);
        self.metrics.duplicates(out.duplicates as u64);
        Ok(out)
    }

    /// Stores values read from the edge for properties of `thing` that hold none yet (see
    /// [`crate::sync`]); the next push of each replaces it. Returns how many were kept.
    pub fn seed(
        &self,
        id: u32,
        thing: &str,
        values: Vec<PropertyUpdate>,
    ) -> Result<usize, NotBoundHere> {
        let mut st = self.lock();
        let Some(t) = st.things.get_mut(thing).filter(|t| t.bound_to == Some(id)) else {
            return Err(NotBoundHere(thing.to_owned()));
        };
        let mut kept = 0;
        for u in values {
            if t.properties
                .get(&u.name)
                .is_some_and(|p| !p.history.is_empty())
            {
                continue;
            }
            let value = PropertyValue {
                value: u.value,
                time: u.time,
                quality: Quality::parse(&u.quality),
            };
            self.emit(Event::Update(UpdateEvent {
                thing: thing.to_owned(),
                property: u.name.clone(),
                value: value.value.to_json(),
                time: value.time,
                quality: value.quality,
            }));
            t.properties.insert(
                u.name,
                Property {
                    history: VecDeque::from([value]),
                    seeded: true,
                },
            );
            t.last_update = Some(u.time);
            kept += 1;
        }
        Ok(kept)
    }

    /// The session a thing is bound to.
    pub fn session_for(&self, thing: &str) -> Result<Arc<EdgeSession>, LookupError> {
        let st = self.lock();
        let t = st
            .things
            .get(thing)
            .ok_or_else(|| LookupError::UnknownThing(thing.to_owned()))?;
        t.bound_to
            .and_then(|id| st.sessions.get(&id).cloned())
            .ok_or_else(|| LookupError::NotBound(thing.to_owned()))
    }

    /// The session with id `id`.
    pub fn session(&self, id: u32) -> Option<Arc<EdgeSession>> {
        self.lock().sessions.get(&id).cloned()
    }

    /// All sessions, e.g. to close them at shutdown.
    pub fn sessions(&self) -> Vec<Arc<EdgeSession>> {
        self.lock().sessions.values().cloned().collect()
    }

    /// Connected sessions.
    pub fn gateways(&self) -> Vec<GatewayInfo> {
        let st = self.lock();
        st.sessions
            .values()
            .map(|s| {
                let (gateway, gateway_type) = s
                    .gateway()
                    .map_or((None, None), |g| (Some(g.name), Some(g.type_name)));
                GatewayInfo {
                    session_id: s.id,
                    gateway,
                    gateway_type,
                    principal: s.principal.clone(),
                    client_cert: s.client_cert.clone(),
                    remote_address: s.remote.to_string(),
                    connected_since: s.connected_since,
                    compressed: s.compressed,
                    bound_things: st.bindings.get(&s.id).map_or(0, BTreeSet::len),
                }
            })
            .collect()
    }

    /// Every thing ever bound or updated.
    pub fn things(&self) -> Vec<ThingSummary> {
        let st = self.lock();
        st.things
            .iter()
            .map(|(name, t)| ThingSummary {
                name: name.clone(),
                gateway: t.gateway.clone(),
                connected: t.bound_to.is_some(),
                session_id: t.bound_to,
                property_count: t.properties.len(),
                last_update: t.last_update,
            })
            .collect()
    }

    /// One thing with the latest value of each property.
    pub fn thing(&self, name: &str) -> Option<ThingDetail> {
        let st = self.lock();
        let t = st.things.get(name)?;
        Some(ThingDetail {
            name: name.to_owned(),
            gateway: t.gateway.clone(),
            connected: t.bound_to.is_some(),
            session_id: t.bound_to,
            last_update: t.last_update,
            properties: t
                .properties
                .iter()
                .filter_map(|(n, p)| Some((n.clone(), p.latest()?.to_json())))
                .collect(),
        })
    }

    /// Whether a thing is known.
    pub fn has_thing(&self, name: &str) -> bool {
        self.lock().things.contains_key(name)
    }

    /// The latest stored value of a property.
    pub fn latest(&self, thing: &str, property: &str) -> Option<PropertyValue> {
        let st = self.lock();
        st.things
            .get(thing)?
            .properties
            .get(property)?
            .latest()
            .cloned()
    }

    /// The stored history of a property, oldest first (the latest value is the last).
    pub fn history(&self, thing: &str, property: &str) -> Option<Vec<PropertyValue>> {
        let st = self.lock();
        let p = st.things.get(thing)?.properties.get(property)?;
        Some(p.history.iter().cloned().collect())
    }

    /// Keeps what the edge's `GetMetadata` answered for `thing` (if the thing is known).
    pub fn set_metadata(&self, thing: &str, metadata: ThingMetadata) {
        if let Some(t) = self.lock().things.get_mut(thing) {
            t.metadata = Some(Arc::new(metadata));
        }
    }

    /// The definitions the edge reported for `thing`, if it answered `GetMetadata`.
    pub fn metadata(&self, thing: &str) -> Option<Arc<ThingMetadata>> {
        self.lock().things.get(thing)?.metadata.clone()
    }

    /// The wire type of the latest stored value, to type writes of that property.
    pub fn wire_type(&self, thing: &str, property: &str) -> Option<WireType> {
        self.latest(thing, property).map(|v| match v.value {
            Primitive::Variant(inner) => inner.wire_type(),
            other => other.wire_type(),
        })
    }

    /// The `GetPropertySubscriptions` rows for a thing: a runtime override, else the config.
    pub fn subscription_rows(
        &self,
        thing: &str,
        config: &SubscriptionsConfig,
    ) -> Vec<SubscriptionRow> {
        match self.lock().subscriptions.get(thing) {
            Some(rows) => rows.clone(),
            None => config.rows_for(thing),
        }
    }

    /// Sets (or with `None` clears) the runtime subscription override of a thing.
    pub fn set_subscriptions(&self, thing: &str, rows: Option<Vec<SubscriptionRow>>) {
        let mut st = self.lock();
        match rows {
            Some(r) => {
                st.subscriptions.insert(thing.to_owned(), r);
            }
            None => {
                st.subscriptions.remove(thing);
            }
        }
    }
}
