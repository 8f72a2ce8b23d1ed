//! Requests the platform sends down the tunnel (property reads and writes, service calls,
//! `GetMetadata`, `NotifyPropertyUpdate`),
//! routed to the registry; each answer is the response message, correlated by request id.

use serde_json::{Map, Value};

use crate::lua::ThingError;
use crate::registry::Registry;
use edgeway_protocol::vtq::{GET_METADATA, NOTIFY_PROPERTY_UPDATE};
use edgeway_protocol::{
    Characteristic, InfoTable, Message, Method, Primitive, Request, Response, StatusCode, WireType,
};

/// What the session must do besides sending the response.
#[derive(Debug, PartialEq, Eq)]
pub enum FollowUp {
    /// Nothing more.
    None,
    /// The platform changed this thing's subscriptions: ask for them again.
    Resubscribe(String),
}

/// Answers one platform request.
pub async fn handle(registry: &Registry, req: Request) -> (Message, FollowUp) {
    let thing = req.entity_name.clone();
    let name = req.characteristic_name.clone();
    let result = match (req.method, req.characteristic) {
        (Method::Get, Characteristic::Properties) => registry
            .read_property(&thing, &name)
            .await
            .map_err(fail)
            .and_then(|r| {
                let wt = WireType::from_base_type(r.base_type);
                Primitive::from_json(wt, &r.value)
                    .map(|p| Some(InfoTable::from_primitive(name.as_str(), p)))
                    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
            }),
        (Method::Put, Characteristic::Properties) => {
            let value = req.params.as_ref().and_then(|t| {
                t.get(0, &name)
                    .or_else(|| t.rows.first().and_then(|r| r.first()))
                    .map(Primitive::to_json)
            });
            match value {
                Some(v) => registry
                    .write_property(&thing, &name, v)
                    .await
                    .map(|_| None)
                    .map_err(fail),
                None => Err((
                    StatusCode::BAD_REQUEST,
                    format!("PUT of {name} carries no value"),
                )),
            }
        }
        (Method::Post, Characteristic::Services) if name == NOTIFY_PROPERTY_UPDATE => {
            let resp = Message::reply_to(&req, StatusCode::SUCCESS, None);
            return (resp, FollowUp::Resubscribe(thing));
        }
        (Method::Post, Characteristic::Services) if name == GET_METADATA => registry
            .metadata(&thing)
            .map(|m| Some(m.to_infotable()))
            .ok_or_else(|| fail(ThingError::UnknownThing(thing.clone()))),
        (Method::Post, Characteristic::Services) => {
            let params = req.params.as_ref().map(params_row).unwrap_or_default();
            let headers = req.headers.clone();
            match registry
                .call_service(&thing, &name, headers, Vec::new(), params)
                .await
            {
                Ok(r) if (200..300).contains(&r.status) => {
                    let wt = r
                        .output
                        .as_ref()
                        .map_or(WireType::Variant, |o| WireType::from_base_type(o.base_type));
                    let prim = if wt == WireType::Variant {
                        Primitive::infer_json(&r.value).map(Primitive::variant)
                    } else {
                        Primitive::from_json(wt, &r.value)
                    };
                    // An INFOTABLE result is the content itself, as SDK edges answer;
                    // anything else is one field `result`.
                    prim.map(|p| match p {
                        Primitive::InfoTable(t) => Some(*t),
                        p => Some(InfoTable::from_primitive("result", p)),
                    })
                    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
                }
                Ok(r) => Err((http_to_status(r.status), value_text(&r.value))),
                Err(e) => Err(fail(e)),
            }
        }
        (m, c) => Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{m:?} on {c:?} is not supported by this edge"),
        )),
    };
    let msg = match result {
        Ok(content) => Message::reply_to(&req, StatusCode::SUCCESS, content),
        Err((status, reason)) => Message::Response(Response {
            header: req.header,
            status,
            reason: Some(reason),
            content: None,
        }),
    };
    (msg, FollowUp::None)
}

/// The first row of a parameter table as a JSON object.
fn params_row(t: &InfoTable) -> Map<String, Value> {
    let Some(row) = t.rows.first() else {
        return Map::new();
    };
    t.shape
        .fields
        .iter()
        .zip(row)
        .map(|(f, v)| (f.name.clone(), v.to_json()))
        .collect()
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Maps a thing error to the protocol status and a reason the platform shows.
fn fail(e: ThingError) -> (StatusCode, String) {
    (http_to_status(e.http_status()), e.to_string())
}

/// A Lua service's HTTP-style status as the nearest protocol status.
fn http_to_status(code: u16) -> StatusCode {
    match code {
        401 => StatusCode::UNAUTHORIZED,
        403 => StatusCode::FORBIDDEN,
        404 => StatusCode::NOT_FOUND,
        405 => StatusCode::METHOD_NOT_ALLOWED,
        406 => StatusCode::NOT_ACCEPTABLE,
        412 => StatusCode::PRECONDITION_FAILED,
        413 => StatusCode::ENTITY_TOO_LARGE,
        415 => StatusCode::UNSUPPORTED_CONTENT_FORMAT,
        501 => StatusCode::NOT_IMPLEMENTED,
        502 => StatusCode::BAD_GATEWAY,
        503 => StatusCode::SERVICE_UNAVAILABLE,
        504 => StatusCode::GATEWAY_TIMEOUT,
        400..=499 => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
