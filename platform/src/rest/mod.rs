//! The JSON REST API: registry views, reads/writes/service calls through the tunnel, the event
//! stream and totals. Optional bearer token (constant-time check); 401 otherwise.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use edgeway_protocol::{
    DataShape, FieldDefinition, InfoTable, Primitive, Response as EdgeResponse,
};
use edgeway_runtime::http::{Connections, Limits};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::BearerToken;
use crate::config::SubscriptionRow;
use crate::edge::EdgeContext;
use crate::registry::LookupError;
use crate::session::TunnelError;

mod response;
pub mod stream;

pub use response::{error, full, json_response, Body};

/// Longest `timeoutMs` a caller may ask for.
const MAX_TIMEOUT_MS: u64 = 300_000;

/// State of the REST listener.
pub struct Api {
    /// Protocol context (registry, metrics, config).
    pub ctx: Arc<EdgeContext>,
    /// Required bearer token, if configured.
    pub token: Option<BearerToken>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time to receive a request body.
    pub body_timeout: Duration,
    /// Fires at shutdown (ends event streams).
    pub shutdown: watch::Receiver<bool>,
}

/// Serves the API until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    api: Arc<Api>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Connections::new(limits.max_connections);
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "REST accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(slot) = connections.admit() else {
            continue; // over the cap: closed at once
        };
        let api = api.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(route(&api, req).await) }
            });
            let _ = edgeway_runtime::http::builder(&limits)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn ok<T: serde::Serialize>(value: &T) -> Response<Body> {
    match serde_json::to_value(value) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Query parameters of a request, percent-decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        Query(
            q.unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(p), String::new()),
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("" | "true" | "1" | "yes"))
    }
}

async fn route(api: &Api, req: Request<Incoming>) -> Response<Body> {
    if let Some(token) = &api.token {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !token.check(auth) {
            let mut r = error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"edgeway-platform\""),
            );
            return r;
        }
    }
    let segments: Vec<String> = req
        .uri()
        .path()
        .split('/')
        .skip(1)
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let query = Query::parse(req.uri().query());
    let method = req.method().clone();
    let ctx = &api.ctx;
    match (&method, segs.as_slice()) {
        (&Method::GET, ["api", "gateways"]) => ok(&ctx.registry.gateways()),
        (&Method::GET, ["api", "things"]) => ok(&ctx.registry.things()),
        (&Method::GET, ["api", "stats"]) => ok(&ctx.metrics.snapshot()),
        (&Method::GET, ["api", "stream"]) => {
            stream::response(&ctx.registry, ctx.metrics.clone(), api.shutdown.clone())
        }
        (&Method::GET, ["api", "things", thing]) => match ctx.registry.thing(thing) {
            Some(t) => ok(&t),
            None => error(
                StatusCode::NOT_FOUND,
                LookupError::UnknownThing((*thing).to_owned()),
            ),
        },
        (&Method::GET, ["api", "things", thing, "properties", prop]) => {
            if query.flag("live") {
                read_live(api, thing, prop, &query).await
            } else {
                read_stored(api, thing, prop, query.flag("history"))
            }
        }
        (&Method::PUT, ["api", "things", thing, "properties", prop]) => {
            let (thing, prop) = ((*thing).to_owned(), (*prop).to_owned());
            match read_json(api, req).await {
                Ok(body) => write_property(api, &thing, &prop, &body, &query).await,
                Err(r) => r,
            }
        }
        (&Method::POST, ["api", "things", thing, "services", service]) => {
            let (thing, service) = ((*thing).to_owned(), (*service).to_owned());
            match read_json(api, req).await {
                Ok(body) => invoke(api, &thing, &service, &body, &query).await,
                Err(r) => r,
            }
        }
        (&Method::GET, ["api", "things", thing, "subscriptions"]) => {
            // The rows as the edge receives them (a `*` row per defined property).
            let rows = ctx.registry.subscription_rows(thing, &ctx.subscriptions);
            ok(&crate::sync::expand(rows, ctx.registry.metadata(thing).as_deref()))
        }
        (&Method::GET, ["api", "things", thing, "events"]) => {
            match ctx.registry.events(thing, query.get("event")) {
                Some(events) => ok(&events),
                None => error(StatusCode::NOT_FOUND, format!("no thing {thing:?}")),
            }
        }
        (&Method::GET, ["api", "things", thing, "metadata"]) => match ctx.registry.metadata(thing) {
            Some(m) => ok(&*m),
            None => error(
                StatusCode::NOT_FOUND,
                format!("no definitions of {thing:?}: not bound since the platform started, or its edge does not answer GetMetadata"),
            ),
        },
        (&Method::PUT, ["api", "things", thing, "subscriptions"]) => {
            let thing = (*thing).to_owned();
            let body = match read_json(api, req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match serde_json::from_value::<Vec<SubscriptionRow>>(body) {
                Ok(rows) => set_subscriptions(api, &thing, Some(rows), &query).await,
                Err(e) => error(
                    StatusCode::BAD_REQUEST,
                    format!("expected an array of {{edgeName, pushType, pushThreshold}}: {e}"),
                ),
            }
        }
        (&Method::DELETE, ["api", "things", thing, "subscriptions"]) => {
            let thing = (*thing).to_owned();
            set_subscriptions(api, &thing, None, &query).await
        }
        (
            _,
            ["api", "gateways" | "things" | "stats" | "stream"]
            | ["api", "things", _]
            | ["api", "things", _, "properties" | "services", _]
            | ["api", "things", _, "subscriptions" | "metadata" | "events"],
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} not allowed here"),
        ),
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    }
}

/// Reads a JSON body (an empty body is `{}`); errors are ready responses.
async fn read_json(api: &Api, req: Request<Incoming>) -> Result<Value, Response<Body>> {
    let read = Limited::new(req.into_body(), api.max_body_bytes).collect();
    let Ok(read) = tokio::time::timeout(api.body_timeout, read).await else {
        return Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "body not received within {} ms",
                api.body_timeout.as_millis()
            ),
        ));
    };
    let bytes = match read {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Err(if e.is::<http_body_util::LengthLimitError>() {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body exceeds {} bytes", api.max_body_bytes),
                )
            } else {
                error(StatusCode::BAD_REQUEST, format!("cannot read body: {e}"))
            })
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))
}

/// The request deadline: `?timeoutMs=` or the configured default.
fn timeout(api: &Api, query: &Query) -> Result<Duration, String> {
    match query.get("timeoutMs") {
        None => Ok(api.ctx.request_timeout),
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Ok(Duration::from_millis(ms)),
            _ => Err(format!(
                "timeoutMs must be an integer between 1 and {MAX_TIMEOUT_MS}"
            )),
        },
    }
}

fn lookup_error(e: LookupError) -> Response<Body> {
    let status = match e {
        LookupError::UnknownThing(_) => StatusCode::NOT_FOUND,
        LookupError::NotBound(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e)
}

fn tunnel_error(e: TunnelError) -> Response<Body> {
    let status = match e {
        TunnelError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        TunnelError::Closed(_) | TunnelError::Protocol(_) => StatusCode::BAD_GATEWAY,
    };
    error(status, e)
}

/// 502 carrying the edge's status name and reason.
fn edge_error(resp: &EdgeResponse) -> Response<Body> {
    let reason = resp.reason.clone().unwrap_or_default();
    json_response(
        StatusCode::BAD_GATEWAY,
        &json!({
            "error": format!("the edge answered {}{}", resp.status.name(),
                if reason.is_empty() { String::new() } else { format!(": {reason}") }),
            "status": resp.status.name(),
            "reason": resp.reason,
        }),
    )
}

fn read_stored(api: &Api, thing: &str, prop: &str, history: bool) -> Response<Body> {
    let reg = &api.ctx.registry;
    if !reg.has_thing(thing) {
        return error(
            StatusCode::NOT_FOUND,
            LookupError::UnknownThing(thing.to_owned()),
        );
    }
    let Some(latest) = reg.latest(thing, prop) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("thing {thing:?} has no stored value for {prop:?}"),
        );
    };
    let v = latest.to_json();
    let mut body = json!({
        "thing": thing,
        "property": prop,
        "value": v.value,
        "time": v.time,
        "quality": v.quality,
        "baseType": v.base_type,
    });
    if history {
        let h: Vec<_> = reg
            .history(thing, prop)
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_json())
            .collect();
        body["history"] = json!(h);
    }
    json_response(StatusCode::OK, &body)
}

async fn read_live(api: &Api, thing: &str, prop: &str, query: &Query) -> Response<Body> {
    let t = match timeout(api, query) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let session = match api.ctx.registry.session_for(thing) {
        Ok(s) => s,
        Err(e) => return lookup_error(e),
    };
    let resp = match session.read_property(thing, prop, t).await {
        Ok(r) => r,
        Err(e) => return tunnel_error(e),
    };
    if !resp.status.is_success() {
        return edge_error(&resp);
    }
    let value = resp.content.as_ref().and_then(|c| {
        c.get(0, prop)
            .or_else(|| c.rows.first().and_then(|r| r.first()))
    });
    match value {
        Some(v) => json_response(
            StatusCode::OK,
            &json!({
                "thing": thing,
                "property": prop,
                "value": v.to_json(),
                "baseType": v.wire_type().name(),
                "live": true,
            }),
        ),
        None => error(
            StatusCode::BAD_GATEWAY,
            "the edge answered SUCCESS without a value",
        ),
    }
}

async fn write_property(
    api: &Api,
    thing: &str,
    prop: &str,
    body: &Value,
    query: &Query,
) -> Response<Body> {
    let t = match timeout(api, query) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(v) = body.get("value") else {
        return error(StatusCode::BAD_REQUEST, "body must be {\"value\": ...}");
    };
    let value = match api.ctx.registry.wire_type(thing, prop) {
        Some(wt) if wt != edgeway_protocol::WireType::Nothing => Primitive::from_json(wt, v)
            .map_err(|e| format!("value does not fit the property's type {}: {e}", wt.name())),
        _ => Primitive::infer_json(v).map_err(|e| format!("unusable value: {e}")),
    };
    let value = match value {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let session = match api.ctx.registry.session_for(thing) {
        Ok(s) => s,
        Err(e) => return lookup_error(e),
    };
    match session.write_property(thing, prop, value, t).await {
        Ok(r) if r.status.is_success() => {
            json_response(StatusCode::OK, &json!({"status": "SUCCESS"}))
        }
        Ok(r) => edge_error(&r),
        Err(e) => tunnel_error(e),
    }
}

/// Most service parameters accepted (the wire format caps a row at 65535 values).
pub const MAX_PARAMS: usize = 1024;

/// A one-row parameter table from a JSON object (types inferred; `null` members omitted).
pub fn params_table(obj: &Map<String, Value>) -> Result<Option<InfoTable>, String> {
    if obj.len() > MAX_PARAMS {
        return Err(format!("at most {MAX_PARAMS} parameters are accepted"));
    }
    let mut fields = Vec::new();
    let mut row = Vec::new();
    for (k, v) in obj {
        if v.is_null() {
            continue;
        }
        let p = Primitive::infer_json(v).map_err(|e| format!("parameter {k:?}: {e}"))?;
        fields.push(FieldDefinition::new(k.clone(), p.wire_type()));
        row.push(p);
    }
    if fields.is_empty() {
        return Ok(None);
    }
    let mut t = InfoTable::new(DataShape::new(fields));
    t.push_row(row).map_err(|e| e.to_string())?;
    Ok(Some(t))
}

async fn invoke(
    api: &Api,
    thing: &str,
    service: &str,
    body: &Value,
    query: &Query,
) -> Response<Body> {
    let t = match timeout(api, query) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(obj) = body.as_object() else {
        return error(
            StatusCode::BAD_REQUEST,
            "body must be a JSON object of parameters",
        );
    };
    let params = match params_table(obj) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let session = match api.ctx.registry.session_for(thing) {
        Ok(s) => s,
        Err(e) => return lookup_error(e),
    };
    let resp = match session.invoke_service(thing, service, params, t).await {
        Ok(r) => r,
        Err(e) => return tunnel_error(e),
    };
    if !resp.status.is_success() {
        return edge_error(&resp);
    }
    let (result, rows) = match &resp.content {
        None => (Value::Null, json!([])),
        Some(table) => {
            let rows = table.to_json().get("rows").cloned().unwrap_or(json!([]));
            let result = if table.shape.fields.len() == 1 {
                table
                    .rows
                    .first()
                    .and_then(|r| r.first())
                    .map_or(Value::Null, Primitive::to_json)
            } else {
                rows.clone()
            };
            (result, rows)
        }
    };
    json_response(
        StatusCode::OK,
        &json!({"status": "SUCCESS", "result": result, "rows": rows}),
    )
}

async fn set_subscriptions(
    api: &Api,
    thing: &str,
    rows: Option<Vec<SubscriptionRow>>,
    query: &Query,
) -> Response<Body> {
    let t = match timeout(api, query) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Some(rows) = &rows {
        if rows
            .iter()
            .any(|r| r.edge_name.is_empty() || !r.push_threshold.is_finite())
        {
            return error(
                StatusCode::BAD_REQUEST,
                "every row needs a non-empty edgeName and a finite pushThreshold",
            );
        }
    }
    let reg = &api.ctx.registry;
    reg.set_subscriptions(thing, rows);
    let subscriptions = reg.subscription_rows(thing, &api.ctx.subscriptions);
    // Tell a bound edge to fetch them again; an unbound thing learns them at its next BIND.
    let notified = match reg.session_for(thing) {
        Err(_) => json!(false),
        Ok(s) => match s.notify_property_update(thing, t).await {
            Ok(r) if r.status.is_success() => json!(true),
            Ok(r) => json!({"status": r.status.name(), "reason": r.reason}),
            Err(e) => json!({"error": e.to_string()}),
        },
    };
    json_response(
        StatusCode::OK,
        &json!({"subscriptions": subscriptions, "notified": notified}),
    )
}
