//! Commands from the broker: service calls and property writes addressed to this gateway's
//! things, run on the registry, each answered with one JSON response.
//!
//! Request payloads are JSON objects: `{"id": <any>, "params": {...}}` for a service call and
//! `{"id": <any>, "value": <value>}` for a write (`id` optional, echoed in the answer for the
//! caller's correlation). Answers: `{"id": ..., "status": 200, "result": ...}` or
//! `{"id": ..., "status": 4xx/5xx, "error": "..."}`, statuses as the REST server's. An AWS
//! shadow delta (`{"version": 7, "state": {<property>: <value>, ...}}`) writes each property and
//! is answered with the version as `id` and each property's status under `results`. An IoT Hub
//! direct method's payload is the service's parameters; a desired-properties patch
//! (`{<thing>: {<property>: <value>}, "$version": n}`) writes each property of each thing and
//! is answered with `results` per thing and property (the layout turns both into IoT Hub's
//! messages). A Sparkplug DCMD's metrics (protobuf) are writes, or service calls when named
//! `Services/<service>`; its answer has `results` per metric (sent as DDATA).

use serde_json::{json, Map, Value};

use super::sparkplug::{self, SERVICES};
use super::topics::Target;
use crate::registry::Registry;

/// What a command message asks, checked before anything runs.
pub enum Request {
    /// The thing is not this gateway's (another gateway sharing the topic prefix answers it).
    NotOurs,
    /// The payload is not a command; the answer says why.
    Invalid(Value),
    /// A well-formed command, to run with [`run`].
    Valid {
        id: Option<Value>,
        body: Map<String, Value>,
    },
}

impl Request {
    /// Reads `payload` as a command for `target`.
    pub fn parse(registry: &Registry, target: &Target, payload: &[u8]) -> Self {
        match target {
            Target::Service { thing, .. }
            | Target::Write { thing, .. }
            | Target::Delta { thing }
            | Target::DeviceCommand { thing } => {
                if !registry.has_thing(thing) {
                    return Self::NotOurs;
                }
            }
            // Addressed to this device alone (IoT Hub): an unknown method is answered.
            Target::Method { thing, service, .. } => {
                if service.is_empty() || !registry.has_thing(thing) {
                    return Self::Invalid(answer(
                        None,
                        404,
                        Err(format!(
                            "no method {:?}: methods are <thing>.<service> of this gateway's things",
                            if service.is_empty() { thing.clone() } else { format!("{thing}.{service}") }
                        )),
                    ));
                }
            }
            Target::Desired | Target::NodeCommand => {}
        }
        let method = matches!(target, Target::Method { .. });
        // Sparkplug: protobuf metrics, by name.
        if matches!(target, Target::DeviceCommand { .. } | Target::NodeCommand) {
            return match sparkplug::command_metrics(payload) {
                Ok(metrics) => Self::Valid {
                    id: None,
                    body: metrics.into_iter().collect(),
                },
                Err(e) => Self::Invalid(answer(None, 400, Err(e))),
            };
        }
        // A method's payload is its parameters (`null` or nothing: none).
        let value = match serde_json::from_slice::<Value>(payload) {
            _ if method && payload.is_empty() => Value::Null,
            Ok(v) => v,
            Err(e) => {
                return Self::Invalid(answer(
                    None,
                    400,
                    Err(format!("the payload is not JSON: {e}")),
                ))
            }
        };
        match value {
            Value::Null if method => Self::Valid {
                id: None,
                body: Map::new(),
            },
            Value::Object(params) if method => Self::Valid {
                id: None,
                body: Map::from_iter([("params".to_owned(), Value::Object(params))]),
            },
            Value::Object(body) => Self::Valid {
                // A shadow delta is identified by the shadow's version, a twin patch by the
                // twin's.
                id: match target {
                    Target::Delta { .. } => body.get("version").cloned(),
                    Target::Desired => body.get("$version").cloned(),
                    _ => body.get("id").cloned(),
                },
                body,
            },
            _ if method => Self::Invalid(answer(
                None,
                400,
                Err("the method's payload must be a JSON object of parameters".into()),
            )),
            _ => Self::Invalid(answer(
                None,
                400,
                Err("the payload must be a JSON object".into()),
            )),
        }
    }
}

/// The answer when too many commands are running already.
pub fn busy(id: Option<Value>) -> Value {
    answer(id, 503, Err("too many commands running; try again".into()))
}

/// Runs a valid command (`body` read by [`Request::parse`]) on the registry; returns its answer.
pub async fn run(
    registry: &Registry,
    target: &Target,
    id: Option<Value>,
    body: &Map<String, Value>,
) -> Value {
    let outcome = match target {
        Target::Service { thing, service } | Target::Method { thing, service, .. } => {
            let params = match body.get("params") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(p)) => p.clone(),
                Some(_) => return answer(id, 400, Err("`params` must be a JSON object".into())),
            };
            match registry
                .call_service(thing, service, Vec::new(), Vec::new(), params)
                .await
            {
                Ok(r) if (200..300).contains(&r.status) => (r.status, Ok(r.value)),
                Ok(r) => (r.status, Err(text(&r.value))),
                Err(e) => (e.http_status(), Err(e.to_string())),
            }
        }
        Target::Write { thing, property } => match body.get("value") {
            None => (400, Err("the payload carries no `value`".into())),
            Some(v) => match registry.write_property(thing, property, v.clone()).await {
                Ok(()) => (200, Ok(Value::Null)),
                Err(e) => (e.http_status(), Err(e.to_string())),
            },
        },
        Target::Delta { thing } => return delta(registry, thing, id, body).await,
        Target::Desired => return desired(registry, id, body).await,
        Target::DeviceCommand { thing } => return device_command(registry, thing, body).await,
        // The connector itself acts on a rebirth request; nothing else is a node command.
        Target::NodeCommand => (
            404,
            Err("the node takes only `Node Control/Rebirth`".into()),
        ),
    };
    answer(id, outcome.0, outcome.1)
}

/// Writes every property a shadow delta's `state` names, by name (JSON objects are read into a
/// sorted map); the answer's `results` has
/// each one's status (and error), its `status` the first failure's (200 when all were written).
async fn delta(
    registry: &Registry,
    thing: &str,
    id: Option<Value>,
    body: &Map<String, Value>,
) -> Value {
    let Some(Value::Object(state)) = body.get("state") else {
        return answer(id, 400, Err("the delta carries no `state` object".into()));
    };
    let mut status = 200;
    let mut results = Map::new();
    for (property, value) in state {
        let r = match registry
            .write_property(thing, property, value.clone())
            .await
        {
            Ok(()) => json!({"status": 200}),
            Err(e) => {
                if status == 200 {
                    status = e.http_status();
                }
                json!({"status": e.http_status(), "error": e.to_string()})
            }
        };
        results.insert(property.clone(), r);
    }
    let mut a = answer(id, status, Ok(Value::Null));
    a["results"] = Value::Object(results);
    a
}

/// Runs each metric of a Sparkplug DCMD by name (sorted; a name given twice runs once, its last
/// value): `Services/<service>` calls the service (the
/// value: a JSON object of parameters in a String, or `true` for none), any other name writes
/// that property. `results` has each metric's answer; `status` is the first failure's.
async fn device_command(registry: &Registry, thing: &str, body: &Map<String, Value>) -> Value {
    let mut status = 200;
    let mut results = Map::new();
    for (name, value) in body {
        let mut r = match name.strip_prefix(SERVICES) {
            Some(service) => {
                let params = match value {
                    Value::Bool(true) => Ok(Map::new()),
                    Value::String(s) => match serde_json::from_str::<Value>(s) {
                        Ok(Value::Object(p)) => Ok(p),
                        _ => Err("the parameters must be a JSON object in a String".to_owned()),
                    },
                    _ => Err("a service metric is a String (JSON parameters) or true".to_owned()),
                };
                match params {
                    Err(e) => answer(None, 400, Err(e)),
                    Ok(params) => {
                        let target = Target::Service {
                            thing: thing.to_owned(),
                            service: service.to_owned(),
                        };
                        let body = Map::from_iter([("params".to_owned(), Value::Object(params))]);
                        Box::pin(run(registry, &target, None, &body)).await
                    }
                }
            }
            None => match registry.write_property(thing, name, value.clone()).await {
                Ok(()) => answer(None, 200, Ok(Value::Null)),
                Err(e) => answer(None, e.http_status(), Err(e.to_string())),
            },
        };
        if let Some(o) = r.as_object_mut() {
            o.remove("id");
        }
        let code = r["status"].as_u64().unwrap_or(500) as u16;
        if status == 200 && code != 200 {
            status = code;
        }
        results.insert(name.clone(), r);
    }
    let mut a = answer(None, status, Ok(Value::Null));
    a["results"] = Value::Object(results);
    a
}

/// Writes every property of every thing a twin's desired-properties patch names; `results` has
/// each thing's properties with the value asked for, its status (and error); `status` is the
/// first failure's. IoT Hub's own keys (`$version`, a component's `__t`) are not properties; a
/// key whose value is not an object (a property of the device itself, not of a thing) is
/// refused with 400 in `results` as `{"value", "status", "error"}`.
async fn desired(registry: &Registry, id: Option<Value>, body: &Map<String, Value>) -> Value {
    let mut status = 200;
    let mut results = Map::new();
    for (thing, properties) in body.iter().filter(|(k, _)| !k.starts_with('$')) {
        let Value::Object(properties) = properties else {
            let e = format!("{thing:?} is not a thing: desired properties are {{<thing>: {{<property>: <value>}}}}");
            results.insert(
                thing.clone(),
                json!({"value": properties, "status": 400, "error": e}),
            );
            if status == 200 {
                status = 400;
            }
            continue;
        };
        let mut outcome = Map::new();
        for (property, value) in properties.iter().filter(|(k, _)| !k.starts_with("__")) {
            let r = if !registry.has_thing(thing) {
                Err((404, format!("no thing {thing:?} on this gateway")))
            } else {
                registry
                    .write_property(thing, property, value.clone())
                    .await
                    .map_err(|e| (e.http_status(), e.to_string()))
            };
            let r = match r {
                Ok(()) => json!({"value": value, "status": 200}),
                Err((code, e)) => {
                    if status == 200 {
                        status = code;
                    }
                    json!({"value": value, "status": code, "error": e})
                }
            };
            outcome.insert(property.clone(), r);
        }
        results.insert(thing.clone(), Value::Object(outcome));
    }
    let mut a = answer(id, status, Ok(Value::Null));
    a["results"] = Value::Object(results);
    a
}

fn answer(id: Option<Value>, status: u16, outcome: Result<Value, String>) -> Value {
    let mut a = json!({ "id": id.unwrap_or(Value::Null), "status": status });
    match outcome {
        Ok(Value::Null) => {}
        Ok(v) => a["result"] = v,
        Err(e) => a["error"] = Value::String(e),
    }
    a
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
