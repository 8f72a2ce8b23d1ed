//! The ThingWorx-style REST API over Lua things, with bodies in the InfoTable JSON form that
//! existing ThingWorx REST clients parse (`dataShape.fieldDefinitions` + `rows`).

use std::time::Instant;

use http::{Method, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};

use super::response::{error, json, Body};
use crate::basetype::BaseType;
use crate::lua::ThingError;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// A parsed things route; `name` is the fixed metrics label.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /things`
    List,
    /// `/Thingworx/Things/{thing}/Properties`
    Properties(String),
    /// `/Thingworx/Things/{thing}/Properties/{prop}`
    Property(String, String),
    /// `/Thingworx/Things/{thing}/Services/{service}`
    Service(String, String),
}

impl Route {
    /// Matches a request path; `None` for paths outside the things API.
    pub fn parse(path: &str) -> Option<Route> {
        if path == "/things" || path == "/things/" {
            return Some(Route::List);
        }
        let rest = path.strip_prefix("/Thingworx/Things/")?;
        let segs: Vec<String> = rest
            .trim_end_matches('/')
            .split('/')
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        match segs.as_slice() {
            [t, p] if p == "Properties" => Some(Route::Properties(t.clone())),
            [t, p, n] if p == "Properties" => Some(Route::Property(t.clone(), n.clone())),
            [t, s, n] if s == "Services" => Some(Route::Service(t.clone(), n.clone())),
            _ => None,
        }
    }

    /// Fixed route name for metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Route::List => "things",
            Route::Properties(..) => "thing_properties",
            Route::Property(..) => "thing_property",
            Route::Service(..) => "thing_service",
        }
    }
}

/// Serves one things-API request.
pub async fn handle(
    things: &Registry,
    metrics: &Metrics,
    route: Route,
    method: &Method,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: &[u8],
) -> http::Response<Body> {
    let started = Instant::now();
    let resp = match (route, method) {
        (Route::List, &Method::GET) => list(things),
        (Route::Properties(t), &Method::GET) => match things.read_properties(&t).await {
            Ok(props) => {
                let fields: Vec<_> = props
                    .iter()
                    .map(|p| (p.name.as_str(), p.base_type, p.description.as_str()))
                    .collect();
                let row = props
                    .iter()
                    .map(|p| (p.name.clone(), p.value.clone()))
                    .collect();
                json(StatusCode::OK, &infotable(&fields, row))
            }
            Err(e) => thing_error(&e),
        },
        (Route::Property(t, p), &Method::GET) => {
            let r = things.read_property(&t, &p).await;
            metrics.lua_call("property", started.elapsed());
            match r {
                Ok(p) => {
                    let row = Map::from_iter([(p.name.clone(), p.value)]);
                    json(
                        StatusCode::OK,
                        &infotable(&[(&p.name, p.base_type, &p.description)], row),
                    )
                }
                Err(e) => thing_error(&e),
            }
        }
        (Route::Property(t, p), &Method::PUT) => match property_from_body(&p, body) {
            Ok(value) => {
                let r = things.write_property(&t, &p, value).await;
                metrics.lua_call("property", started.elapsed());
                match r {
                    Ok(()) => json(StatusCode::OK, &json!({})),
                    Err(e) => thing_error(&e),
                }
            }
            Err(msg) => error(StatusCode::BAD_REQUEST, msg),
        },
        (Route::Service(t, s), &Method::POST) => match params_from_body(body) {
            Ok(params) => {
                let r = things.call_service(&t, &s, headers, query, params).await;
                metrics.lua_call("service", started.elapsed());
                match r {
                    Ok(res) if (200..300).contains(&res.status) => {
                        let base = res
                            .output
                            .as_ref()
                            .map_or(BaseType::Variant, |o| o.base_type);
                        let row = Map::from_iter([("result".to_owned(), res.value)]);
                        let status = StatusCode::from_u16(res.status).unwrap_or(StatusCode::OK);
                        json(status, &infotable(&[("result", base, "")], row))
                    }
                    Ok(res) => {
                        let status = StatusCode::from_u16(res.status)
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                        let msg = match res.value {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        error(status, msg)
                    }
                    Err(e) => thing_error(&e),
                }
            }
            Err(msg) => error(StatusCode::BAD_REQUEST, msg),
        },
        (route, _) => {
            let allow = match route {
                Route::List | Route::Properties(..) => "GET",
                Route::Property(..) => "GET, PUT",
                Route::Service(..) => "POST",
            };
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} not allowed here (allowed: {allow})"),
            );
            r.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
            r
        }
    };
    resp
}

fn list(registry: &Registry) -> http::Response<Body> {
    let lua = registry.lua();
    let items: Vec<Value> = lua
        .thing_names()
        .iter()
        .filter_map(|n| lua.describe(n))
        .map(|i| {
            json!({
                "name": i.name,
                "template": i.template,
                "properties": i.properties.iter().map(|p| json!({
                    "name": p.name, "baseType": p.base_type, "description": p.description,
                })).collect::<Vec<_>>(),
                "services": i.services.iter().map(|s| json!({
                    "name": s.name,
                    "description": s.description,
                    "inputs": s.inputs.iter().map(|f| json!({"name": f.name, "baseType": f.base_type})).collect::<Vec<_>>(),
                    "output": s.output.as_ref().map(|f| f.base_type),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    // A fleet is summarised, not listed: it may hold 100,000 devices.
    let simulation = registry.sim().map(|s| {
        let shard = s.schema.shard();
        json!({
            "devices": s.schema.device_count(),
            "shard": {"start": shard.start, "end": shard.end},
            "first": s.schema.name(shard.start),
            "properties": s.schema.properties().iter().map(|p| json!({
                "name": p.name, "baseType": p.base_type, "intervalMs": p.interval_ms,
            })).collect::<Vec<_>>(),
        })
    });
    json(
        StatusCode::OK,
        &json!({ "things": items, "simulation": simulation }),
    )
}

/// Builds the InfoTable JSON form: a data shape of the fields and one row.
pub fn infotable(fields: &[(&str, BaseType, &str)], row: Map<String, Value>) -> Value {
    let defs: Map<String, Value> = fields
        .iter()
        .enumerate()
        .map(|(i, (name, base, desc))| {
            (
                (*name).to_owned(),
                json!({"name": name, "baseType": base, "description": desc, "ordinal": i, "aspects": {}}),
            )
        })
        .collect();
    json!({ "dataShape": { "fieldDefinitions": defs }, "rows": [row] })
}

/// Reads a property value from `{"prop": v}` or an InfoTable `{"rows": [{"prop": v}]}`.
fn property_from_body(prop: &str, body: &[u8]) -> Result<Value, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let from_row = v
        .get("rows")
        .and_then(|r| r.get(0))
        .and_then(|r| r.get(prop))
        .cloned();
    v.get(prop)
        .cloned()
        .or(from_row)
        .ok_or_else(|| format!("body must be a JSON object with the key {prop:?}"))
}

/// Service parameters: a JSON object (or an empty body for none).
fn params_from_body(body: &[u8]) -> Result<Map<String, Value>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("service parameters must be a JSON object".into()),
        Err(e) => Err(format!("body is not valid JSON: {e}")),
    }
}

/// Maps a thing error to its HTTP status; messages name the thing, property or service.
fn thing_error(e: &ThingError) -> http::Response<Body> {
    let status = match e {
        ThingError::UnknownThing(..)
        | ThingError::UnknownProperty { .. }
        | ThingError::UnknownService { .. } => StatusCode::NOT_FOUND,
        ThingError::WrongType { .. } => StatusCode::BAD_REQUEST,
        ThingError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_decode() {
        assert_eq!(Route::parse("/things"), Some(Route::List));
        assert_eq!(
            Route::parse("/Thingworx/Things/Pump%201/Properties/temp"),
            Some(Route::Property("Pump 1".into(), "temp".into()))
        );
        assert_eq!(
            Route::parse("/Thingworx/Things/P/Services/Add/"),
            Some(Route::Service("P".into(), "Add".into()))
        );
        assert_eq!(Route::parse("/Thingworx/Things/P"), None);
        assert_eq!(Route::parse("/other"), None);
    }

    #[test]
    fn property_body_forms() {
        assert_eq!(property_from_body("t", br#"{"t": 3}"#).unwrap(), json!(3));
        assert_eq!(
            property_from_body("t", br#"{"rows":[{"t": true}]}"#).unwrap(),
            json!(true)
        );
        assert!(property_from_body("t", br#"{"x": 1}"#).is_err());
        assert!(property_from_body("t", b"nope").is_err());
    }
}
