//! The AlwaysOn protocol per session: authentication, BIND/UNBIND, the services edges call,
//! keep-alives, and platform → edge requests correlated by request id.
//!
//! Transport (websocket frames, chunking, pings) lives in `ws.rs`; this module only sees
//! whole [`Message`]s and queues replies on the session's outbound channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgeway_protocol::message::{Auth, APP_KEY_CLAIM, AUTH_SESSION_ID};
use edgeway_protocol::vtq::{
    into_updates, GET_PROPERTY_SUBSCRIPTIONS, NOTIFY_PROPERTY_UPDATE,
    UPDATE_SUBSCRIBED_PROPERTY_VALUES,
};
use edgeway_protocol::{
    Bind, Characteristic, DataShape, EntityType, FieldDefinition, Gateway, Header, InfoTable,
    Message, Method, Primitive, Request, Response, StatusCode, WireType,
};
use tokio::sync::{mpsc, oneshot};

use crate::auth::AppKeys;
use crate::config::{
    AuthConfig, AuthMethod, AuthRequire, BindPolicy, SubscriptionRow, SubscriptionsConfig,
};
use crate::metrics::Metrics;
use crate::registry::{now_ms, Registry};

/// Everything a session needs from the platform.
pub struct EdgeContext {
    /// Shared state.
    pub registry: Arc<Registry>,
    /// Metrics and totals.
    pub metrics: Arc<Metrics>,
    /// Application keys, when `appKey` is an accepted method.
    pub app_keys: Option<AppKeys>,
    /// Accepted methods and how they combine.
    pub auth: AuthConfig,
    /// Ownership rule of thing names.
    pub bind_policy: BindPolicy,
    /// Configured subscriptions.
    pub subscriptions: SubscriptionsConfig,
    /// Default deadline of platform → edge requests.
    pub request_timeout: Duration,
}

/// What the websocket layer queues for a session's writer.
#[derive(Debug)]
pub enum Outbound {
    /// An AlwaysOn message (split into chunks when large).
    Message(Message),
    /// A websocket ping.
    Ping,
    /// A websocket close with code and reason; the writer stops after it.
    Close(u16, String),
}

/// Why a platform → edge request produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// No response within the deadline.
    #[error("the edge did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The session ended (or was ending) before the edge answered.
    #[error("session {0} closed before the edge answered")]
    Closed(u32),
    /// The edge answered in a way the platform cannot use.
    #[error("protocol error: {0}")]
    Protocol(String),
}

type Pending = HashMap<u32, oneshot::Sender<Result<Response, TunnelError>>>;

/// One authenticated AlwaysOn session: identity, bindings owner, and the request tunnel.
pub struct EdgeSession {
    /// The session id carried by every message after AUTH.
    pub id: u32,
    /// Authenticated principal: app key name, else the client certificate identity.
    pub principal: String,
    /// Verified client certificate identity, when one was presented.
    pub client_cert: Option<String>,
    /// Remote socket address.
    pub remote: SocketAddr,
    /// Epoch milliseconds of authentication.
    pub connected_since: i64,
    gateway: Mutex<Option<Gateway>>,
    out: mpsc::Sender<Outbound>,
    pending: Mutex<(bool, Pending)>,
    next_request_id: AtomicU32,
    closing: AtomicBool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for EdgeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeSession")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// Authenticated identity of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Principal name.
    pub principal: String,
    /// Certificate identity, when a verified client certificate was presented.
    pub client_cert: Option<String>,
}

/// A refused AUTH: a fixed metric label and a reason for the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRefusal {
    /// Metric label.
    pub label: &'static str,
    /// Reason sent in the UNAUTHORIZED response.
    pub reason: &'static str,
}

impl EdgeContext {
    /// Checks an AUTH message and the connection's certificate identity against the config.
    pub fn authenticate(&self, auth: &Auth, cert: Option<&str>) -> Result<Identity, AuthRefusal> {
        let app_key = auth
            .claims
            .iter()
            .find(|(k, _)| k == APP_KEY_CLAIM)
            .map(|(_, v)| v.as_str());
        let mut key_principal = None;
        let mut failures = Vec::new();
        for m in &self.auth.methods {
            match m {
                AuthMethod::AppKey => match (app_key, &self.app_keys) {
                    (Some(k), Some(keys)) => match keys.check(k) {
                        Some(p) => key_principal = Some(p),
                        None => failures.push(AuthRefusal {
                            label: "badAppKey",
                            reason: "invalid application key",
                        }),
                    },
                    _ => failures.push(AuthRefusal {
                        label: "noAppKey",
                        reason: "no appKey claim",
                    }),
                },
                AuthMethod::ClientCert => {
                    if cert.is_none() {
                        failures.push(AuthRefusal {
                            label: "noClientCert",
                            reason: "no verified client certificate",
                        });
                    }
                }
            }
        }
        let passed = self.auth.methods.len() - failures.len();
        let ok = match self.auth.require {
            AuthRequire::Any => passed > 0,
            AuthRequire::All => failures.is_empty(),
        };
        if !ok {
            return Err(failures.into_iter().next().unwrap_or(AuthRefusal {
                label: "refused",
                reason: "authentication refused",
            }));
        }
        let principal = key_principal
            .or_else(|| cert.map(str::to_owned))
            .unwrap_or_else(|| "anonymous".to_owned());
        Ok(Identity {
            principal,
            client_cert: cert.map(str::to_owned),
        })
    }

    /// A fresh random session id: nonzero, not the AUTH marker, not in use.
    pub fn new_session_id(&self) -> u32 {
        loop {
            let id: u32 = rand::random();
            if id != 0 && id != AUTH_SESSION_ID && !self.registry.has_session(id) {
                return id;
            }
        }
    }
}

impl EdgeSession {
    /// A session that queues outgoing traffic on `out`.
    pub fn new(
        id: u32,
        identity: Identity,
        remote: SocketAddr,
        out: mpsc::Sender<Outbound>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            id,
            principal: identity.principal,
            client_cert: identity.client_cert,
            remote,
            connected_since: now_ms(),
            gateway: Mutex::new(None),
            out,
            pending: Mutex::new((false, HashMap::new())),
            next_request_id: AtomicU32::new(1),
            closing: AtomicBool::new(false),
            metrics,
        }
    }

    /// The gateway announced by the last BIND that carried one.
    pub fn gateway(&self) -> Option<Gateway> {
        self.gateway
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The announced gateway name.
    pub fn gateway_name(&self) -> Option<String> {
        self.gateway().map(|g| g.name)
    }

    /// The gateway name, else the principal: how things name their gateway.
    pub fn display_gateway(&self) -> String {
        self.gateway_name()
            .unwrap_or_else(|| self.principal.clone())
    }

    fn set_gateway(&self, g: Gateway) {
        *self.gateway.lock().unwrap_or_else(|p| p.into_inner()) = Some(g);
    }

    /// Queues a message for the edge; `false` when the session's writer is gone.
    pub async fn send(&self, msg: Message) -> bool {
        self.out.send(Outbound::Message(msg)).await.is_ok()
    }

    /// Asks the session's connection to close with a websocket close code.
    pub fn close(&self, code: u16, reason: &str) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.out.try_send(Outbound::Close(code, reason.to_owned()));
    }

    /// Whether a close was requested.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    fn next_request_id(&self) -> u32 {
        loop {
            let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Sends a request to the edge and waits for its response (any status) or the deadline.
    /// `kind` labels metrics. The request and session ids are set here.
    pub async fn request(
        &self,
        kind: &'static str,
        mut msg: Message,
        timeout: Duration,
    ) -> Result<Response, TunnelError> {
        let request_id = self.next_request_id();
        let h = msg.header_mut();
        h.request_id = request_id;
        h.session_id = self.id;
        h.endpoint_id = 0;
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if p.0 {
                return Err(TunnelError::Closed(self.id));
            }
            p.1.insert(request_id, tx);
        }
        let started = Instant::now();
        let exchange = async {
            if !self.send(msg).await {
                return Err(TunnelError::Closed(self.id));
            }
            rx.await.unwrap_or(Err(TunnelError::Closed(self.id)))
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(TunnelError::Timeout(timeout)),
        };
        if result.is_err() {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .remove(&request_id);
        }
        let outcome = match &result {
            Ok(r) if r.status.is_success() => "success",
            Ok(_) => "edgeError",
            Err(TunnelError::Timeout(_)) => "timeout",
            Err(TunnelError::Closed(_)) => "closed",
            Err(TunnelError::Protocol(_)) => "protocolError",
        };
        self.metrics.edge_request(kind, outcome, started.elapsed());
        result
    }

    /// Reads a property from the edge (GET `<thing>/Properties/<p>`).
    pub async fn read_property(
        &self,
        thing: &str,
        property: &str,
        timeout: Duration,
    ) -> Result<Response, TunnelError> {
        let msg = Message::read_property(0, thing, property);
        self.request("readProperty", msg, timeout).await
    }

    /// Writes a property on the edge (PUT `<thing>/Properties/<p>`).
    pub async fn write_property(
        &self,
        thing: &str,
        property: &str,
        value: Primitive,
        timeout: Duration,
    ) -> Result<Response, TunnelError> {
        let msg = Message::write_property(0, thing, property, value);
        self.request("writeProperty", msg, timeout).await
    }

    /// Invokes a service on the edge (POST `<thing>/Services/<s>`).
    pub async fn invoke_service(
        &self,
        thing: &str,
        service: &str,
        params: Option<InfoTable>,
        timeout: Duration,
    ) -> Result<Response, TunnelError> {
        let msg = Message::invoke_service(0, thing, service, params);
        self.request("invokeService", msg, timeout).await
    }

    /// Tells the edge a thing's subscriptions changed (POST `NotifyPropertyUpdate`).
    pub async fn notify_property_update(
        &self,
        thing: &str,
        timeout: Duration,
    ) -> Result<Response, TunnelError> {
        let msg = Message::invoke_service(0, thing, NOTIFY_PROPERTY_UPDATE, None);
        self.request("notifyPropertyUpdate", msg, timeout).await
    }

    /// Hands a response from the edge to the request waiting for it.
    fn complete(&self, response: Response) {
        let waiter = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .remove(&response.header.request_id);
        match waiter {
            Some(tx) => {
                let _ = tx.send(Ok(response));
            }
            None => tracing::debug!(
                session = self.id,
                request_id = response.header.request_id,
                "response for no pending request (late or unknown); dropped"
            ),
        }
    }

    fn fail(&self, request_id: u32, error: TunnelError) {
        let waiter = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .remove(&request_id);
        if let Some(tx) = waiter {
            let _ = tx.send(Err(error));
        }
    }

    /// Marks the session ended: every waiting request fails with [`TunnelError::Closed`].
    pub fn shut(&self) {
        let drained: Vec<_> = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            p.0 = true;
            p.1.drain().collect()
        };
        for (_, tx) in drained {
            let _ = tx.send(Err(TunnelError::Closed(self.id)));
        }
    }

    /// Requests waiting for a response.
    pub fn pending_requests(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .len()
    }
}

/// A response echoing `header`, with a reason.
pub fn reply(header: Header, status: StatusCode, reason: Option<String>) -> Message {
    Message::Response(Response {
        header,
        status,
        reason,
        content: None,
    })
}

/// Handles one message of an authenticated session; returns the reply to send, if any.
pub fn handle(ctx: &EdgeContext, session: &EdgeSession, msg: Message) -> Option<Message> {
    let kind = match &msg {
        Message::Request(r) => request_kind(r),
        other => other.kind(),
    };
    ctx.metrics.edge_message(kind);
    let header = *msg.header();
    if header.session_id != session.id {
        let reason = format!(
            "session id {} does not match this session",
            header.session_id
        );
        tracing::warn!(
            session = session.id,
            got = header.session_id,
            kind,
            "session id mismatch"
        );
        if let Message::Response(r) = msg {
            session.fail(r.header.request_id, TunnelError::Protocol(reason));
            return None;
        }
        return Some(reply(header, StatusCode::UNAUTHORIZED, Some(reason)));
    }
    match msg {
        Message::Auth(_) => Some(reply(
            header,
            StatusCode::BAD_REQUEST,
            Some("already authenticated".to_owned()),
        )),
        Message::Bind(b) => Some(bind(ctx, session, b)),
        Message::Unbind(b) => {
            let removed = ctx.registry.unbind(session.id, &b.names);
            tracing::info!(session = session.id, things = ?removed, "unbound");
            Some(reply(header, StatusCode::SUCCESS, None))
        }
        Message::KeepAlive(h) => Some(Message::response(h, StatusCode::SUCCESS, None)),
        Message::Response(r) => {
            session.complete(r);
            None
        }
        Message::Request(r) => Some(request(ctx, session, r)),
    }
}

/// Metric label of an edge request.
fn request_kind(r: &Request) -> &'static str {
    match (r.method, r.characteristic, r.characteristic_name.as_str()) {
        (Method::Post, Characteristic::Services, UPDATE_SUBSCRIBED_PROPERTY_VALUES) => {
            "updateSubscribedPropertyValues"
        }
        (Method::Post, Characteristic::Services, GET_PROPERTY_SUBSCRIPTIONS) => {
            "getPropertySubscriptions"
        }
        _ => "otherRequest",
    }
}

/// Longest thing name accepted in a BIND.
const MAX_NAME_LEN: usize = 256;

/// Thing names must be usable as REST path segments and in logs.
fn acceptable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.chars().any(|c| c.is_control() || c == '/')
}

fn bind(ctx: &EdgeContext, session: &EdgeSession, b: Bind) -> Message {
    if let Some(g) = b.gateway.clone() {
        session.set_gateway(g);
    }
    let (names, bad): (Vec<String>, Vec<String>) =
        b.names.into_iter().partition(|n| acceptable_name(n));
    let out = ctx.registry.bind(session.id, &names, ctx.bind_policy);
    for (name, old) in &out.taken_over {
        tracing::info!(thing = %name, from_session = old, to_session = session.id, "binding taken over (lastInWins)");
        if let Some(s) = ctx.registry.session(*old) {
            tracing::debug!(session = s.id, thing = %name, "previous holder loses the binding");
        }
    }
    tracing::info!(session = session.id, gateway = ?session.gateway_name(), things = ?out.bound, "bound");
    let mut problems = Vec::new();
    if !out.refused.is_empty() {
        let names: Vec<&str> = out.refused.iter().map(|(n, _)| n.as_str()).collect();
        tracing::warn!(session = session.id, things = ?names, "bind refused: bound by another session (firstInWins)");
        problems.push(format!(
            "already bound by another session: {}",
            names.join(", ")
        ));
    }
    if !bad.is_empty() {
        problems.push(format!("invalid thing names: {}", bad.join(", ")));
    }
    if problems.is_empty() {
        reply(b.header, StatusCode::SUCCESS, None)
    } else {
        let status = if out.refused.is_empty() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::FORBIDDEN
        };
        reply(b.header, status, Some(problems.join("; ")))
    }
}

fn request(ctx: &EdgeContext, session: &EdgeSession, r: Request) -> Message {
    let header = r.header;
    let refuse = |status, reason: String| reply(header, status, Some(reason));
    if r.entity_type != EntityType::Thing {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "entity type {:#04x} is not supported; only Thing",
                r.entity_type.code()
            ),
        );
    }
    match (r.method, r.characteristic, r.characteristic_name.as_str()) {
        (Method::Post, Characteristic::Services, GET_PROPERTY_SUBSCRIPTIONS) => {
            let rows = ctx
                .registry
                .subscription_rows(&r.entity_name, &ctx.subscriptions);
            Message::reply_to(&r, StatusCode::SUCCESS, Some(subscriptions_table(&rows)))
        }
        (Method::Post, Characteristic::Services, UPDATE_SUBSCRIBED_PROPERTY_VALUES) => {
            let Some(params) = r.params else {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "parameter `values` is missing".into(),
                );
            };
            let updates = match into_updates(params) {
                Ok(u) => u,
                Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("bad `values`: {e}")),
            };
            match ctx.registry.store(session.id, &r.entity_name, updates) {
                Ok(out) => {
                    tracing::debug!(session = session.id, thing = %r.entity_name, stored = out.stored, duplicates = out.duplicates, "values stored");
                    reply(header, StatusCode::SUCCESS, None)
                }
                Err(e) => refuse(StatusCode::FORBIDDEN, e.to_string()),
            }
        }
        (method, characteristic, name) => refuse(
            StatusCode::NOT_FOUND,
            format!(
                "{method:?} {}/{}/{name} is not provided by this platform",
                r.entity_name,
                characteristic_name(characteristic)
            ),
        ),
    }
}

fn characteristic_name(c: Characteristic) -> String {
    match c {
        Characteristic::Properties => "Properties".into(),
        Characteristic::Services => "Services".into(),
        Characteristic::Events => "Events".into(),
        Characteristic::Other(code) => format!("characteristic {code:#04x}"),
    }
}

/// The `GetPropertySubscriptions` result: rows `edgeName`, `pushType`, `pushThreshold`.
///
/// A real ThingWorx platform lists one row per subscribed property and never sends `*`;
/// this platform answers `edgeName: "*"` with empty `pushType` and `pushThreshold` 0 by
/// default, meaning "every property, with the edge's own push settings".
pub fn subscriptions_table(rows: &[SubscriptionRow]) -> InfoTable {
    let mut t = InfoTable::new(DataShape::new(vec![
        FieldDefinition::new("edgeName", WireType::String),
        FieldDefinition::new("pushType", WireType::String),
        FieldDefinition::new("pushThreshold", WireType::Number),
    ]));
    for r in rows {
        t.rows.push(vec![
            Primitive::string(r.edge_name.clone()),
            Primitive::string(r.push_type.clone()),
            Primitive::Number(r.push_threshold),
        ]);
    }
    t
}
