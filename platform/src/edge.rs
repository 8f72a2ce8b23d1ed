//! The AlwaysOn protocol per session: authentication, BIND/UNBIND, the services edges call,
//! keep-alives, and platform → edge requests correlated by request id.
//!
//! Transport (websocket frames, chunking, pings) lives in `ws.rs`; this module only sees
//! whole [`Message`]s and queues replies on the session's outbound channel.

use std::sync::Arc;
use std::time::Duration;

use edgeway_protocol::message::{Auth, APP_KEY_CLAIM, AUTH_SESSION_ID};
use edgeway_protocol::vtq::{
    into_updates, GET_PROPERTY_SUBSCRIPTIONS, UPDATE_SUBSCRIBED_PROPERTY_VALUES,
};
use edgeway_protocol::{
    Bind, Characteristic, DataShape, EntityType, FieldDefinition, Header, InfoTable, Message,
    Method, Primitive, Request, Response, StatusCode, WireType,
};

use crate::auth::AppKeys;
use crate::config::{
    AuthConfig, AuthMethod, AuthRequire, BindPolicy, SubscriptionRow, SubscriptionsConfig,
};
use crate::metrics::Metrics;
use crate::registry::{EventOutcome, Registry, EVENT_TIME_HEADER};
use crate::session::{EdgeSession, Identity, TunnelError};

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
    /// Failed AUTHs per remote address.
    pub throttle: crate::throttle::AuthThrottle,
    /// Things one session may hold bound.
    pub max_things_per_session: usize,
    /// Thing names each principal may bind.
    pub scopes: crate::scope::ThingScopes,
    /// Whether a BIND is followed by [`crate::sync::after_bind`] (`syncOnBind`).
    pub sync_on_bind: bool,
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

/// A response echoing `header`, with a reason.
pub fn reply(header: Header, status: StatusCode, reason: Option<String>) -> Message {
    Message::Response(Response {
        header,
        status,
        reason,
        content: None,
    })
}

/// What the session loop does with one message from the edge.
#[derive(Debug)]
pub enum Step {
    /// Nothing to send (a response was handed to its waiting request).
    Nothing,
    /// Send this reply.
    Reply(Message),
    /// Send this BIND reply, then synchronise the things it bound ([`crate::sync::after_bind`]).
    Bound(Message, Vec<String>),
    /// Answer `GetPropertySubscriptions` once the thing's definitions are known
    /// ([`crate::sync::answer_subscriptions`]).
    Subscriptions(Request),
}

/// Handles one message of an authenticated session.
pub fn handle(ctx: &EdgeContext, session: &EdgeSession, msg: Message) -> Step {
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
            return Step::Nothing;
        }
        return Step::Reply(reply(header, StatusCode::UNAUTHORIZED, Some(reason)));
    }
    match msg {
        Message::Auth(_) => Step::Reply(reply(
            header,
            StatusCode::BAD_REQUEST,
            Some("already authenticated".to_owned()),
        )),
        Message::Bind(b) => {
            let (answer, bound) = bind(ctx, session, b);
            if ctx.sync_on_bind && !bound.is_empty() {
                Step::Bound(answer, bound)
            } else {
                Step::Reply(answer)
            }
        }
        Message::Unbind(b) => {
            let removed = ctx.registry.unbind(session.id, &b.names);
            tracing::info!(session = session.id, things = ?removed, "unbound");
            Step::Reply(reply(header, StatusCode::SUCCESS, None))
        }
        Message::KeepAlive(h) => Step::Reply(Message::response(h, StatusCode::SUCCESS, None)),
        Message::Response(r) => {
            session.complete(r);
            Step::Nothing
        }
        Message::Request(r)
            if r.entity_type == EntityType::Thing
                && (r.method, r.characteristic, r.characteristic_name.as_str())
                    == (
                        Method::Post,
                        Characteristic::Services,
                        GET_PROPERTY_SUBSCRIPTIONS,
                    ) =>
        {
            Step::Subscriptions(r)
        }
        Message::Request(r) => Step::Reply(request(ctx, session, r)),
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
        (Method::Post, Characteristic::Events, _) => "fireEvent",
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

/// Binds the names of `b`; returns the answer and the names now bound to this session.
fn bind(ctx: &EdgeContext, session: &EdgeSession, b: Bind) -> (Message, Vec<String>) {
    if let Some(g) = b.gateway.clone() {
        session.set_gateway(g);
    }
    let (names, bad): (Vec<String>, Vec<String>) =
        b.names.into_iter().partition(|n| acceptable_name(n));
    let (names, out_of_scope): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|n| ctx.scopes.allows(&session.principal, n));
    let out = ctx.registry.bind(
        session.id,
        &names,
        ctx.bind_policy,
        ctx.max_things_per_session,
    );
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
    if !out_of_scope.is_empty() {
        tracing::warn!(session = session.id, principal = %session.principal, things = ?out_of_scope, "bind refused: outside the principal's thing scope");
        problems.push(format!(
            "outside this key's thing scope: {}",
            out_of_scope.join(", ")
        ));
    }
    if !out.owned_elsewhere.is_empty() {
        tracing::warn!(session = session.id, principal = %session.principal, things = ?out.owned_elsewhere, "bind refused: bound before by another principal");
        problems.push(format!(
            "bound before by another principal: {}",
            out.owned_elsewhere.join(", ")
        ));
    }
    if !out.over_limit.is_empty() {
        tracing::warn!(
            session = session.id,
            refused = out.over_limit.len(),
            "bind refused: over the session's limit of things"
        );
        problems.push(format!(
            "over the limit of {} things per session: {} names refused",
            ctx.max_things_per_session,
            out.over_limit.len()
        ));
    }
    let answer = if problems.is_empty() {
        reply(b.header, StatusCode::SUCCESS, None)
    } else {
        let status = if out.refused.is_empty()
            && out.over_limit.is_empty()
            && out_of_scope.is_empty()
            && out.owned_elsewhere.is_empty()
        {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::FORBIDDEN
        };
        reply(b.header, status, Some(problems.join("; ")))
    };
    (answer, out.bound)
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
        (Method::Post, Characteristic::Events, event) => {
            let time = r
                .headers
                .iter()
                .find(|(k, _)| k == EVENT_TIME_HEADER)
                .and_then(|(_, v)| v.parse::<i64>().ok());
            match ctx.registry.store_event(
                session.id,
                &r.entity_name,
                event,
                time,
                r.params.as_ref(),
            ) {
                Ok(EventOutcome::Stored) => {
                    ctx.metrics.event("stored");
                    reply(header, StatusCode::SUCCESS, None)
                }
                Ok(EventOutcome::Duplicate) => {
                    ctx.metrics.event("duplicate");
                    reply(header, StatusCode::SUCCESS, None)
                }
                Err(e) => {
                    ctx.metrics.event("refused");
                    refuse(StatusCode::FORBIDDEN, e.to_string())
                }
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
/// [`crate::sync::expand`] turns the configured `*` row into such rows first.
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
