//! Sparkplug B (Eclipse Sparkplug 3.0) payloads: the protobuf messages, written by hand from
//! the specification's `sparkplug_b.proto` (only the fields the gateway writes or reads; prost
//! skips the others), and what goes into them.
//!
//! The gateway is an edge node (`spBv1.0/<group>/N*/<node>`), each thing one of its devices
//! (`.../D*/<node>/<thing>`). Every message of a session but NDEATH carries `seq`, 0 in NBIRTH
//! and one more (mod 256) in each message after it; NBIRTH and the NDEATH of the will carry the
//! same `bdSeq`, one more at each new connection, so a host can tell which death belongs to
//! which birth.

use edgeway_protocol::basetype::BaseType;
use prost::Message;
use serde_json::{Map, Value};

use crate::registry::PropertyReading;
use crate::tunnel::outbox::Update;

/// The protobuf messages (field tags from `sparkplug_b.proto`).
pub mod proto {
    /// `Payload`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Payload {
        /// Unix ms when the message was made.
        #[prost(uint64, optional, tag = "1")]
        pub timestamp: Option<u64>,
        /// The metrics.
        #[prost(message, repeated, tag = "2")]
        pub metrics: Vec<Metric>,
        /// Sequence number, 0–255.
        #[prost(uint64, optional, tag = "3")]
        pub seq: Option<u64>,
    }

    /// `Payload.Metric`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        /// Its name (`Setpoint`, `Node Control/Rebirth`).
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        /// Unix ms of the value.
        #[prost(uint64, optional, tag = "3")]
        pub timestamp: Option<u64>,
        /// `DataType` (see [`super::datatype`]).
        #[prost(uint32, optional, tag = "4")]
        pub datatype: Option<u32>,
        /// No value.
        #[prost(bool, optional, tag = "7")]
        pub is_null: Option<bool>,
        /// The value.
        #[prost(oneof = "Value", tags = "10, 11, 12, 13, 14, 15")]
        pub value: Option<Value>,
    }

    /// `Payload.Metric.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// Int8–Int32 (two's complement), UInt8–UInt32.
        #[prost(uint32, tag = "10")]
        Int(u32),
        /// Int64 (two's complement), UInt64, DateTime.
        #[prost(uint64, tag = "11")]
        Long(u64),
        /// Float.
        #[prost(float, tag = "12")]
        Float(f32),
        /// Double.
        #[prost(double, tag = "13")]
        Double(f64),
        /// Boolean.
        #[prost(bool, tag = "14")]
        Boolean(bool),
        /// String, Text, UUID.
        #[prost(string, tag = "15")]
        String(::prost::alloc::string::String),
    }
}

use proto::{Metric, Payload};

/// Sparkplug `DataType` numbers.
pub mod datatype {
    /// Int8.
    pub const INT8: u32 = 1;
    /// Int16.
    pub const INT16: u32 = 2;
    /// Int32.
    pub const INT32: u32 = 3;
    /// Int64.
    pub const INT64: u32 = 4;
    /// UInt8.
    pub const UINT8: u32 = 5;
    /// UInt16.
    pub const UINT16: u32 = 6;
    /// UInt32.
    pub const UINT32: u32 = 7;
    /// UInt64.
    pub const UINT64: u32 = 8;
    /// Float.
    pub const FLOAT: u32 = 9;
    /// Double.
    pub const DOUBLE: u32 = 10;
    /// Boolean.
    pub const BOOLEAN: u32 = 11;
    /// String.
    pub const STRING: u32 = 12;
    /// DateTime (Unix ms).
    pub const DATETIME: u32 = 13;
    /// Text.
    pub const TEXT: u32 = 14;
}

/// The node's rebirth request metric (NCMD) and its announcement in NBIRTH.
pub const REBIRTH: &str = "Node Control/Rebirth";
/// A DCMD metric named `Services/<service>` calls the service; its value is the parameters as
/// a JSON object in a String, or `true` for none.
pub const SERVICES: &str = "Services/";
/// The outcome of each DCMD metric goes out in DDATA as `Results/<metric>` (JSON, a String).
pub const RESULTS: &str = "Results/";

/// The sequence state of one session.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// The `seq` of the next message.
    seq: u8,
    /// The birth/death sequence number of the current (or next) connection.
    pub bd_seq: u64,
}

impl Session {
    /// The `seq` for the next message, counted.
    pub fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        u64::from(s)
    }

    /// A birth starts the count again at 0.
    pub fn restart(&mut self) {
        self.seq = 0;
    }
}

/// NDEATH: the last will of connection `bd_seq` (no `seq`).
pub fn ndeath(bd_seq: u64) -> Vec<u8> {
    Payload {
        timestamp: Some(now_ms()),
        metrics: vec![bd_seq_metric(bd_seq)],
        seq: None,
    }
    .encode_to_vec()
}

/// NBIRTH: `bdSeq` and the rebirth control; starts the session's `seq` at 0.
pub fn nbirth(s: &mut Session) -> Vec<u8> {
    s.restart();
    let rebirth = Metric {
        name: Some(REBIRTH.into()),
        datatype: Some(datatype::BOOLEAN),
        value: Some(proto::Value::Boolean(false)),
        ..Default::default()
    };
    Payload {
        timestamp: Some(now_ms()),
        metrics: vec![bd_seq_metric(s.bd_seq), rebirth],
        seq: Some(s.next_seq()),
    }
    .encode_to_vec()
}

/// DBIRTH of one thing: every property with its current value.
pub fn dbirth(s: &mut Session, properties: &[PropertyReading]) -> Vec<u8> {
    Payload {
        timestamp: Some(now_ms()),
        metrics: properties
            .iter()
            .map(|p| metric(&p.name, p.base_type, &p.value, p.time_ms))
            .collect(),
        seq: Some(s.next_seq()),
    }
    .encode_to_vec()
}

/// DDATA of one update: a property's value, or an event as `Events/<event>` (its data as JSON).
pub fn ddata(s: &mut Session, u: &Update) -> Vec<u8> {
    let m = if u.event {
        let name = format!("Events/{}", u.property);
        metric(&name, BaseType::Json, &u.value, u.time_ms)
    } else {
        metric(&u.property, u.base_type, &u.value, u.time_ms)
    };
    Payload {
        timestamp: Some(now_ms()),
        metrics: vec![m],
        seq: Some(s.next_seq()),
    }
    .encode_to_vec()
}

/// DDATA with a command's outcomes: `Results/<metric>` for each entry of `results`.
pub fn results(s: &mut Session, results: &Map<String, Value>) -> Vec<u8> {
    let time = now_ms();
    Payload {
        timestamp: Some(time),
        metrics: results
            .iter()
            .map(|(name, r)| Metric {
                name: Some(format!("{RESULTS}{name}")),
                timestamp: Some(time),
                datatype: Some(datatype::STRING),
                value: Some(proto::Value::String(r.to_string())),
                ..Default::default()
            })
            .collect(),
        seq: Some(s.next_seq()),
    }
    .encode_to_vec()
}

/// The metrics of a DCMD or NCMD as `(name, value)`, the value as JSON by its data type.
pub fn command_metrics(payload: &[u8]) -> Result<Vec<(String, Value)>, String> {
    let p = Payload::decode(payload).map_err(|e| format!("not a Sparkplug B payload: {e}"))?;
    p.metrics
        .into_iter()
        .map(|m| {
            let name = m
                .name
                .ok_or("a metric without a name (aliases are not used by this node)")?;
            let value = if m.is_null == Some(true) {
                Value::Null
            } else {
                json_value(m.datatype.unwrap_or(0), m.value.as_ref())
                    .ok_or_else(|| format!("metric {name:?}: no value of a supported type"))?
            };
            Ok((name, value))
        })
        .collect()
}

/// A metric of `value` as the property's type says.
fn metric(name: &str, base_type: BaseType, value: &Value, time_ms: i64) -> Metric {
    use proto::Value as V;
    let (datatype, v) = match base_type {
        BaseType::Number => (datatype::DOUBLE, value.as_f64().map(V::Double)),
        // Two's complement in the unsigned fields, as the specification says.
        BaseType::Integer => (
            datatype::INT32,
            value.as_i64().map(|i| V::Int(i as i32 as u32)),
        ),
        BaseType::Long => (datatype::INT64, value.as_i64().map(|i| V::Long(i as u64))),
        BaseType::Datetime => (
            datatype::DATETIME,
            value.as_i64().map(|i| V::Long(i as u64)),
        ),
        BaseType::Boolean => (datatype::BOOLEAN, value.as_bool().map(V::Boolean)),
        BaseType::String | BaseType::Text => (
            datatype::STRING,
            value.as_str().map(|s| V::String(s.to_owned())),
        ),
        // Everything else (JSON, INFOTABLE, LOCATION, ...) as its JSON text.
        _ => (datatype::STRING, Some(V::String(value.to_string()))),
    };
    Metric {
        name: Some(name.to_owned()),
        timestamp: u64::try_from(time_ms).ok(),
        datatype: Some(datatype),
        is_null: v.is_none().then_some(true),
        value: v,
    }
}

/// A command metric's value as JSON; `None` when the type is not one this node reads.
fn json_value(datatype: u32, v: Option<&proto::Value>) -> Option<Value> {
    use proto::Value as V;
    Some(match (datatype, v?) {
        (datatype::INT8 | datatype::INT16 | datatype::INT32, V::Int(i)) => Value::from(*i as i32),
        (datatype::UINT8 | datatype::UINT16 | datatype::UINT32, V::Int(i)) => Value::from(*i),
        (datatype::INT64 | datatype::DATETIME, V::Long(l)) => Value::from(*l as i64),
        (datatype::UINT64, V::Long(l)) => Value::from(*l),
        (datatype::FLOAT, V::Float(f)) => serde_json::Number::from_f64(f64::from(*f))?.into(),
        (datatype::DOUBLE, V::Double(d)) => serde_json::Number::from_f64(*d)?.into(),
        (datatype::BOOLEAN, V::Boolean(b)) => Value::from(*b),
        (datatype::STRING | datatype::TEXT, V::String(s)) => Value::from(s.as_str()),
        _ => return None,
    })
}

fn bd_seq_metric(bd_seq: u64) -> Metric {
    Metric {
        name: Some("bdSeq".into()),
        datatype: Some(datatype::INT64),
        value: Some(proto::Value::Long(bd_seq)),
        ..Default::default()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeway_protocol::basetype::Quality;
    use serde_json::json;

    #[test]
    fn seq_counts_from_the_birth_and_wraps_at_256() {
        let mut s = Session {
            bd_seq: 3,
            ..Default::default()
        };
        let birth = Payload::decode(nbirth(&mut s).as_slice()).unwrap();
        assert_eq!(birth.seq, Some(0));
        assert_eq!(birth.metrics[0].name.as_deref(), Some("bdSeq"));
        assert_eq!(birth.metrics[0].value, Some(proto::Value::Long(3)));
        let seqs: Vec<u64> = (0..300).map(|_| s.next_seq()).collect();
        assert_eq!(seqs[0], 1);
        assert_eq!(seqs[254], 255);
        assert_eq!(seqs[255], 0);
        let death = Payload::decode(ndeath(3).as_slice()).unwrap();
        assert_eq!(death.seq, None, "NDEATH carries no seq");
        assert_eq!(death.metrics[0].value, Some(proto::Value::Long(3)));
    }

    #[test]
    fn values_take_the_data_type_of_their_property() {
        let mut s = Session::default();
        let u = |base_type, value| Update {
            thing: "pump".into(),
            property: "p".into(),
            base_type,
            value,
            time_ms: 1_700_000_000_000,
            quality: Quality::Good,
            event: false,
        };
        let one = |u: Update, s: &mut Session| {
            Payload::decode(ddata(s, &u).as_slice()).unwrap().metrics[0].clone()
        };
        let m = one(u(BaseType::Integer, json!(-2)), &mut s);
        assert_eq!(m.datatype, Some(datatype::INT32));
        assert_eq!(m.value, Some(proto::Value::Int(-2i32 as u32)));
        assert_eq!(m.timestamp, Some(1_700_000_000_000));
        let m = one(u(BaseType::Number, json!(21.5)), &mut s);
        assert_eq!(m.value, Some(proto::Value::Double(21.5)));
        let m = one(u(BaseType::Json, json!({"a": 1})), &mut s);
        assert_eq!(m.value, Some(proto::Value::String(r#"{"a":1}"#.into())));
        let m = one(u(BaseType::Number, json!(null)), &mut s);
        assert_eq!((m.is_null, m.value), (Some(true), None));
        let mut event = u(BaseType::Json, json!({"text": "hot"}));
        event.event = true;
        event.property = "Alarm".into();
        assert_eq!(one(event, &mut s).name.as_deref(), Some("Events/Alarm"));
    }

    #[test]
    fn command_metrics_read_back_as_json_by_data_type() {
        let cmd = Payload {
            timestamp: Some(1),
            metrics: vec![
                Metric {
                    name: Some("Setpoint".into()),
                    datatype: Some(datatype::INT32),
                    value: Some(proto::Value::Int(-5i32 as u32)),
                    ..Default::default()
                },
                Metric {
                    name: Some("Services/Add".into()),
                    datatype: Some(datatype::STRING),
                    value: Some(proto::Value::String(r#"{"a":1}"#.into())),
                    ..Default::default()
                },
            ],
            seq: None,
        };
        assert_eq!(
            command_metrics(&cmd.encode_to_vec()).unwrap(),
            [
                ("Setpoint".to_owned(), json!(-5)),
                ("Services/Add".to_owned(), json!(r#"{"a":1}"#))
            ]
        );
        assert!(command_metrics(b"\xff\xff\xff").is_err());
        let nameless = Payload {
            metrics: vec![Metric::default()],
            ..Default::default()
        };
        assert!(command_metrics(&nameless.encode_to_vec()).is_err());
    }
}
