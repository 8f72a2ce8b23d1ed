//! TEMPORARY stand-in for the Lua runtime until it lands (not committed).
use crate::basetype::BaseType;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LuaLimits {
    pub instructions: u64,
}
impl Default for LuaLimits {
    fn default() -> Self {
        Self { instructions: 1 }
    }
}
pub struct TemplateSource {
    pub name: String,
    pub path: PathBuf,
}
pub struct ThingSpec {
    pub name: String,
    pub template: String,
    pub scan_rate: Duration,
    pub properties: serde_json::Map<String, serde_json::Value>,
}
#[derive(Debug, Clone)]
pub struct PropertyDef {
    pub name: String,
    pub base_type: BaseType,
    pub description: String,
}
#[derive(Debug, Clone)]
pub struct ServiceDef {
    pub name: String,
    pub inputs: Vec<FieldDef>,
    pub output: Option<FieldDef>,
    pub description: String,
}
#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub base_type: BaseType,
    pub description: String,
}
#[derive(Debug, Clone)]
pub struct PropertyValue {
    pub value: serde_json::Value,
    pub time_ms: i64,
    pub quality: crate::basetype::Quality,
}
#[derive(Debug, Clone)]
pub struct PropertyChange {
    pub thing: Arc<str>,
    pub property: Arc<str>,
    pub base_type: BaseType,
    pub value: PropertyValue,
}
pub struct ServiceResult {
    pub status: u16,
    pub value: serde_json::Value,
    pub output: Option<FieldDef>,
}
pub struct ThingInfo {
    pub name: String,
    pub template: String,
    pub properties: Vec<PropertyDef>,
    pub services: Vec<ServiceDef>,
}
#[derive(Debug, thiserror::Error)]
pub enum ThingError {
    #[error("unknown thing {0}")]
    UnknownThing(String),
    #[error("unknown property")]
    UnknownProperty { thing: String, property: String },
    #[error("unknown service")]
    UnknownService { thing: String, service: String },
    #[error("wrong type")]
    WrongType { name: String, expected: BaseType },
    #[error("timeout")]
    Timeout,
    #[error("instr")]
    InstructionLimit,
    #[error("mem")]
    MemoryLimit,
    #[error("{0}")]
    Script(String),
}
#[derive(Debug, thiserror::Error)]
#[error("lua")]
pub struct LuaError;
pub struct Things;
impl Things {
    pub fn load(
        _t: &[TemplateSource],
        _s: &[ThingSpec],
        _l: LuaLimits,
    ) -> Result<Things, LuaError> {
        Ok(Things)
    }
    pub fn thing_names(&self) -> Vec<String> {
        vec![]
    }
    pub fn describe(&self, _t: &str) -> Option<ThingInfo> {
        None
    }
    pub async fn read_property(
        &self,
        t: &str,
        _p: &str,
    ) -> Result<(PropertyDef, PropertyValue), ThingError> {
        Err(ThingError::UnknownThing(t.into()))
    }
    pub async fn read_properties(
        &self,
        t: &str,
    ) -> Result<Vec<(PropertyDef, PropertyValue)>, ThingError> {
        Err(ThingError::UnknownThing(t.into()))
    }
    pub async fn write_property(
        &self,
        t: &str,
        _p: &str,
        _v: serde_json::Value,
    ) -> Result<(), ThingError> {
        Err(ThingError::UnknownThing(t.into()))
    }
    pub async fn call_service(
        &self,
        t: &str,
        _s: &str,
        _h: Vec<(String, String)>,
        _q: Vec<(String, String)>,
        _p: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ServiceResult, ThingError> {
        Err(ThingError::UnknownThing(t.into()))
    }
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<PropertyChange> {
        tokio::sync::broadcast::channel(1).1
    }
    pub fn spawn_tasks(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        vec![]
    }
}
