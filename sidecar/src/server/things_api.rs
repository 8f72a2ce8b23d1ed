//! The ThingWorx-style REST API over Lua things, with bodies in the InfoTable JSON form that
//! existing ThingWorx REST clients parse (`dataShape.fieldDefinitions` + `rows`).

use std::time::Instant;

use http::{Method, StatusCode};
use percent_encoding::percent_decode_str;
use serde::ser::SerializeMap;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::response::{error, json, json_bytes, Body};
use crate::lua::ThingError;
use crate::metrics::Metrics;
use crate::registry::{FireError, Registry};
use edgeway_protocol::basetype::BaseType;

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
    /// `/Thingworx/Things/{thing}/Events/{event}`
    Event(String, String),
    /// `/Thingworx/Things/{thing}/Metadata`
    Metadata(String),
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
            [t, m] if m == "Metadata" => Some(Route::Metadata(t.clone())),
            [t, p, n] if p == "Properties" => Some(Route::Property(t.clone(), n.clone())),
            [t, s, n] if s == "Services" => Some(Route::Service(t.clone(), n.clone())),
            [t, e, n] if e == "Events" => Some(Route::Event(t.clone(), n.clone())),
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
            Route::Event(..) => "thing_event",
            Route::Metadata(..) => "thing_metadata",
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
        // The thing's definitions, as GetMetadata answers them on the tunnel (the SDK's
        // `getMetadataService` layout): what ThingWorx and REST clients browse.
        (Route::Metadata(t), &Method::GET) => match things.metadata(&t) {
            Some(m) => json(StatusCode::OK, &serde_json::to_value(m).unwrap_or_default()),
            None => thing_error(&ThingError::UnknownThing(t)),
        },
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
                infotable(StatusCode::OK, &fields, &row)
            }
            Err(e) => thing_error(&e),
        },
        (Route::Property(t, p), &Method::GET) => {
            let r = things.read_property(&t, &p).await;
            metrics.lua_call("property", started.elapsed());
            match r {
                Ok(p) => {
                    let row = Map::from_iter([(p.name.clone(), p.value)]);
                    infotable(
                        StatusCode::OK,
                        &[(&p.name, p.base_type, &p.description)],
                        &row,
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
        // As the EMS takes events from local applications: the body is the data (a JSON
        // object); 200 once the event is queued for the platform.
        (Route::Event(t, e), &Method::POST) => match params_from_body(body) {
            Ok(data) => match things.fire_event(&t, &e, data) {
                Ok(()) => json(StatusCode::OK, &json!({})),
                Err(FireError::Thing(e)) => thing_error(&e),
                Err(e @ FireError::NoTunnel) => {
                    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                }
                Err(e @ FireError::BadName(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
            },
            Err(msg) => error(
                StatusCode::BAD_REQUEST,
                msg.replace("service parameters", "event data"),
            ),
        },
        (Route::Service(t, s), &Method::POST) => match params_from_body(body) {
            Ok(params) => {
                let r = things.call_service(&t, &s, headers, query, params).await;
                metrics.lua_call("service", started.elapsed());
                match r {
                    // An INFOTABLE result is the table itself, as ThingWorx answers it.
                    Ok(res)
                        if (200..300).contains(&res.status)
                            && res
                                .output
                                .as_ref()
                                .is_some_and(|o| o.base_type == BaseType::Infotable)
                            && res.value.get("rows").is_some() =>
                    {
                        json(
                            StatusCode::from_u16(res.status).unwrap_or(StatusCode::OK),
                            &res.value,
                        )
                    }
                    Ok(res) if (200..300).contains(&res.status) => {
                        let base = res
                            .output
                            .as_ref()
                            .map_or(BaseType::Variant, |o| o.base_type);
                        let row = Map::from_iter([("result".to_owned(), res.value)]);
                        let status = StatusCode::from_u16(res.status).unwrap_or(StatusCode::OK);
                        infotable(status, &[("result", base, "")], &row)
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
                Route::List | Route::Properties(..) | Route::Metadata(..) => "GET",
                Route::Property(..) => "GET, PUT",
                Route::Service(..) | Route::Event(..) => "POST",
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
    let body = registry.catalogue(|| render_list(registry));
    json_bytes(StatusCode::OK, body)
}

fn render_list(registry: &Registry) -> bytes::Bytes {
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
    json!({ "things": items, "simulation": simulation })
        .to_string()
        .into()
}

/// An InfoTable response: a data shape of the fields and one row. Serialized straight from
/// borrowed parts: building it as a `serde_json::Value` tree first was most of a property
/// read's CPU.
fn infotable(
    status: StatusCode,
    fields: &[(&str, BaseType, &str)],
    row: &Map<String, Value>,
) -> http::Response<Body> {
    let table = InfoTable {
        data_shape: DataShape {
            field_definitions: FieldDefinitions(fields),
        },
        rows: [row],
    };
    match serde_json::to_vec(&table) {
        Ok(body) => json_bytes(status, body.into()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Serialize)]
struct InfoTable<'a> {
    #[serde(rename = "dataShape")]
    data_shape: DataShape<'a>,
    rows: [&'a Map<String, Value>; 1],
}

#[derive(Serialize)]
struct DataShape<'a> {
    #[serde(rename = "fieldDefinitions")]
    field_definitions: FieldDefinitions<'a>,
}

/// `{name: {name, baseType, description, ordinal, aspects}}` in field order.
struct FieldDefinitions<'a>(&'a [(&'a str, BaseType, &'a str)]);

impl Serialize for FieldDefinitions<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Field<'a> {
            name: &'a str,
            #[serde(rename = "baseType")]
            base_type: BaseType,
            description: &'a str,
            ordinal: usize,
            aspects: Aspects,
        }
        #[derive(Serialize)]
        struct Aspects {}
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (ordinal, (name, base_type, description)) in self.0.iter().enumerate() {
            let field = Field {
                name,
                base_type: *base_type,
                description,
                ordinal,
                aspects: Aspects {},
            };
            map.serialize_entry(name, &field)?;
        }
        map.end()
    }
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
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, e)
}

#[cfg(test)]
mod tests;
