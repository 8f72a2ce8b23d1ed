//! Commands from the broker: service calls and property writes addressed to this gateway's
//! things, run on the registry, each answered with one JSON response.
//!
//! Request payloads are JSON objects: `{"id": <any>, "params": {...}}` for a service call and
//! `{"id": <any>, "value": <value>}` for a write (`id` optional, echoed in the answer for the
//! caller's correlation). Answers: `{"id": ..., "status": 200, "result": ...}` or
//! `{"id": ..., "status": 4xx/5xx, "error": "..."}`, statuses as the REST server's. An AWS
//! shadow delta (`{"version": 7, "state": {<property>: <value>, ...}}`) writes each property and
//! is answered with the version as `id` and each property's status under `results`.

use serde_json::{json, Map, Value};

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
        let thing = match target {
            Target::Service { thing, .. }
            | Target::Write { thing, .. }
            | Target::Delta { thing } => thing,
        };
        if !registry.has_thing(thing) {
            return Self::NotOurs;
        }
        match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(body)) => Self::Valid {
                // A shadow delta is identified by the shadow's version.
                id: match target {
                    Target::Delta { .. } => body.get("version").cloned(),
                    _ => body.get("id").cloned(),
                },
                body,
            },
            Ok(_) => Self::Invalid(answer(
                None,
                400,
                Err("the payload must be a JSON object".into()),
            )),
            Err(e) => Self::Invalid(answer(
                None,
                400,
                Err(format!("the payload is not JSON: {e}")),
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
        Target::Service { thing, service } => {
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
    };
    answer(id, outcome.0, outcome.1)
}

/// Writes every property a shadow delta's `state` names, in order; the answer's `results` has
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
