//! Sandboxed Lua "things": LSR-compatible templates run in one isolated Lua VM per thing.
//!
//! A template is a Lua script (as written for the ThingWorx Lua Script Resource) that fills the
//! `properties`, `serviceDefinitions`, `services` and `tasks` globals. A thing is one instance of
//! a template, with its own VM, property values and task scan rate. [`Things`] is the async API
//! the resource server and the platform tunnel use. See `docs/lua.md`.

mod convert;
mod dialect;
mod error;
mod events;
mod lexer;
mod links;
mod lsr_config;
mod offload;
mod pattern;
mod sandbox;
mod strfns;
mod template;
mod thing;
mod things;
mod to_be_closed;
mod vm;

#[cfg(test)]
mod tests;

pub use dialect::Dialect;
pub use edgeway_protocol::basetype::Quality;
pub use error::{LuaError, ThingError};
pub use lsr_config::read_lsr_config;
pub use template::check as check_template;
pub use things::{Ended, Observer, Things};

use edgeway_protocol::basetype::BaseType;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Per-VM execution limits, so one misbehaving script cannot starve or exhaust the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LuaLimits {
    /// VM instructions one call (task run, service call) may execute.
    pub instructions: u64,
    /// Wall-clock time one call may take.
    #[serde(rename = "deadlineMs", with = "duration_ms")]
    #[schemars(with = "u64")]
    pub deadline: Duration,
    /// Memory one thing's VM may allocate in total (0 disables the limit).
    pub memory_bytes: usize,
    /// Largest JSON a value of a script becomes (a service result, a property value). The VM's
    /// memory does not bound it: a table can hold one big string many times.
    pub max_result_bytes: usize,
}

impl Default for LuaLimits {
    fn default() -> Self {
        LuaLimits {
            instructions: 10_000_000,
            deadline: Duration::from_secs(1),
            memory_bytes: 32 * 1024 * 1024,
            // 1,000,000 integers encode to 6.9 MB: a big legitimate result still fits.
            max_result_bytes: 8 * 1024 * 1024,
        }
    }
}

/// `deadlineMs` as whole milliseconds, the unit the config file uses.
mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A template as named in the config, with the script file that implements it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSource {
    /// Name things refer to in [`ThingSpec::template`].
    pub name: String,
    /// The Lua script; also the chunk name, so errors read `path:line: ...`.
    pub path: PathBuf,
    /// The Lua it is written in.
    pub dialect: Dialect,
}

/// One thing to instantiate, as named in the config.
#[derive(Debug, Clone, PartialEq)]
pub struct ThingSpec {
    /// Thing name, unique across the gateway.
    pub name: String,
    /// Name of the [`TemplateSource`] it instantiates.
    pub template: String,
    /// Period at which all of the thing's `tasks.*` functions run.
    pub scan_rate: Duration,
    /// Per-thing overrides of the template's default property values.
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// A property as defined by a template, so callers can describe and type-check it.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyDef {
    /// Property name (the key in the `properties` table).
    pub name: String,
    /// Declared type; values are coerced to it.
    pub base_type: BaseType,
    /// When changes are pushed to subscribers.
    pub push_type: PushType,
    /// Minimum numeric change that counts as a change for `VALUE`/`ON` pushes.
    pub push_threshold: f64,
    /// Free text from the template.
    pub description: String,
}

/// LSR push types: when a property change is reported to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushType {
    /// After every task run (and every write of it), changed or not.
    Always,
    /// When the value changes (by more than the threshold for numbers).
    Value,
    /// Never pushed.
    Never,
    /// Same as `Value` (LSR spelling).
    On,
    /// Same as `Never` (LSR spelling).
    Off,
}

impl PushType {
    /// Parses the LSR spelling (`ALWAYS`, `VALUE`, `NEVER`, `ON`, `OFF`), case-insensitively.
    pub fn parse(s: &str) -> Option<PushType> {
        const ALL: [(&str, PushType); 5] = [
            ("ALWAYS", PushType::Always),
            ("VALUE", PushType::Value),
            ("NEVER", PushType::Never),
            ("ON", PushType::On),
            ("OFF", PushType::Off),
        ];
        ALL.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, t)| *t)
    }

    /// The LSR spelling, for descriptions and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PushType::Always => "ALWAYS",
            PushType::Value => "VALUE",
            PushType::Never => "NEVER",
            PushType::On => "ON",
            PushType::Off => "OFF",
        }
    }
}

/// A service as defined by `serviceDefinitions.X(...)` (or untyped when only `services.X` exists).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDef {
    /// Service name (the key in `services`).
    pub name: String,
    /// Declared inputs; checked on call.
    pub inputs: Vec<FieldDef>,
    /// Declared result type, `None` when the service has no definition.
    pub output: Option<FieldDef>,
    /// Free text from `description{...}`.
    pub description: String,
}

/// A typed service input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDef {
    /// Parameter name (`result` for outputs without a name).
    pub name: String,
    /// Declared type.
    pub base_type: BaseType,
    /// Free text from the template.
    pub description: String,
}

/// A property's current value with the metadata ThingWorx reports alongside it.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyValue {
    /// The value, coerced to the property's base type.
    pub value: serde_json::Value,
    /// Unix time in milliseconds of the last change (or of loading).
    pub time_ms: i64,
    /// Data quality as ThingWorx reports it.
    pub quality: Quality,
}

/// A pushed property change, broadcast to subscribers (REST subscribers, the platform tunnel).
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyChange {
    /// Thing that owns the property.
    pub thing: Arc<str>,
    /// Property name.
    pub property: Arc<str>,
    /// The property's declared type, so consumers can encode the value without a lookup.
    pub base_type: BaseType,
    /// The new value.
    pub value: PropertyValue,
}

/// What a service returned: an HTTP-like status and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceResult {
    /// Status the script returned (200 when it returned nothing).
    pub status: u16,
    /// Result value (for 2xx, coerced to the declared output type) or error message.
    pub value: serde_json::Value,
    /// The declared output, so callers can shape the response (e.g. as an infotable).
    pub output: Option<FieldDef>,
}

/// An event as defined by `eventDefinitions.X(input{...}, description "...")`: the fields its
/// data carries (the SDK defines an event as a service without output).
#[derive(Debug, Clone, PartialEq)]
pub struct EventDef {
    /// Event name.
    pub name: String,
    /// Fields of the event data; `fireEvent` checks and coerces them.
    pub fields: Vec<FieldDef>,
    /// Free text from `description{...}`.
    pub description: String,
}

/// One fired event, on its way to the platform tunnel's outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct FiredEvent {
    /// Thing (or simulated device) that fired it.
    pub thing: String,
    /// Event name.
    pub event: String,
    /// Its data: field name to value (one InfoTable row on the wire).
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Firing time, Unix milliseconds.
    pub time_ms: i64,
}

/// Where fired events go (the tunnel's outbox); set once the tunnel exists.
pub type EventSink = Box<dyn Fn(FiredEvent) + Send + Sync>;

/// Shared by every VM of a [`Things`]: `me:fireEvent` hands events to the sink set here.
pub type EventHub = Arc<std::sync::OnceLock<EventSink>>;

/// Static description of a thing, for metadata endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct ThingInfo {
    /// Thing name.
    pub name: String,
    /// Template it instantiates.
    pub template: String,
    /// Properties, sorted by name.
    pub properties: Vec<PropertyDef>,
    /// Services, sorted by name.
    pub services: Vec<ServiceDef>,
    /// Events, sorted by name.
    pub events: Vec<EventDef>,
}

/// Unix time in milliseconds, the clock of property and event times.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
