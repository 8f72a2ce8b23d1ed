//! A thing's definitions as the `GetMetadata` service returns them: one InfoTable field
//! `result` (JSON) holding an object with `propertyDefinitions`, `serviceDefinitions` and
//! `eventDefinitions`, each keyed by name. The layout follows the Edge C SDK's
//! `getMetadataService` (twApi.c); the sidecar writes it, the platform reads it. Unknown keys
//! are kept out of the types but tolerated, since SDK edges add aspects of their own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::infotable::InfoTable;
use crate::primitive::Primitive;
use crate::primitive::StringType;

/// Name of the one field of the `GetMetadata` result.
pub const RESULT_FIELD: &str = "result";

/// Largest metadata JSON the platform parses (the message size bounds it already; this keeps
/// one thing's description from taking a whole 1 MiB message's worth of parse work).
pub const MAX_METADATA_JSON: usize = 256 * 1024;

/// The whole description of one thing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThingMetadata {
    /// Thing name.
    pub name: String,
    /// Free text (the SDK sends an empty string).
    #[serde(default)]
    pub description: String,
    /// Always false for edge things.
    #[serde(default)]
    pub is_system_object: bool,
    /// Properties by name.
    #[serde(default)]
    pub property_definitions: BTreeMap<String, PropertyDefinition>,
    /// Services by name.
    #[serde(default)]
    pub service_definitions: BTreeMap<String, ServiceDefinition>,
    /// Events by name.
    #[serde(default)]
    pub event_definitions: BTreeMap<String, EventDefinition>,
}

/// One property: name, base type, and aspects such as `pushType` and `pushThreshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyDefinition {
    /// Property name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Base type name, e.g. `NUMBER`.
    pub base_type: String,
    /// Aspects: `pushType`, `pushThreshold`, `dataChangeType`, ...
    #[serde(default)]
    pub aspects: Map<String, Value>,
}

impl PropertyDefinition {
    /// The `pushType` aspect, when the edge states one.
    pub fn push_type(&self) -> Option<&str> {
        self.aspects.get("pushType").and_then(Value::as_str)
    }

    /// The `pushThreshold` aspect, when the edge states one.
    pub fn push_threshold(&self) -> Option<f64> {
        self.aspects.get("pushThreshold").and_then(Value::as_f64)
    }
}

/// One field of a data shape (service input, event data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDefinition {
    /// Field name.
    pub name: String,
    /// Base type name.
    pub base_type: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Aspects, e.g. `dataShape` of an INFOTABLE field.
    #[serde(default)]
    pub aspects: Map<String, Value>,
}

/// A data shape as the SDK's `twDataShape_ToJson` writes it: fields keyed by name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShapeDefinition {
    /// Fields by name.
    #[serde(default)]
    pub field_definitions: BTreeMap<String, FieldDefinition>,
    /// Aspects of the shape, e.g. its `dataShape` name on event data.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub aspects: Map<String, Value>,
}

/// A service's result: its base type, named `result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputDefinition {
    /// Always `result`.
    pub name: String,
    /// Base type name.
    pub base_type: String,
    /// Fields of an INFOTABLE result (empty otherwise; the SDK always writes the key).
    #[serde(default)]
    pub field_definitions: BTreeMap<String, FieldDefinition>,
}

/// One service: inputs and output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDefinition {
    /// Service name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Service aspects.
    #[serde(default)]
    pub aspects: Map<String, Value>,
    /// Input parameters (`Inputs`; the SDK writes an empty object when there are none).
    #[serde(rename = "Inputs", default)]
    pub inputs: ShapeDefinition,
    /// The result (`Outputs`).
    #[serde(rename = "Outputs", default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<OutputDefinition>,
}

/// One event: its data shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDefinition {
    /// Event name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Event aspects.
    #[serde(default)]
    pub aspects: Map<String, Value>,
    /// The fields an event of this kind carries (`EventData`).
    #[serde(rename = "EventData", default)]
    pub event_data: ShapeDefinition,
}

/// Why a `GetMetadata` result could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetadataError {
    /// No `result` field with a string in the first row.
    #[error("no `result` field with JSON text in the first row")]
    NoResult,
    /// Larger than [`MAX_METADATA_JSON`].
    #[error("metadata JSON of {0} bytes is over the limit of {MAX_METADATA_JSON}")]
    TooLarge(usize),
    /// Not JSON of the expected shape.
    #[error("metadata JSON: {0}")]
    Json(String),
}

impl ThingMetadata {
    /// The `GetMetadata` result: field `result` of type JSON holding this description.
    pub fn to_infotable(&self) -> InfoTable {
        let text = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        InfoTable::from_primitive(RESULT_FIELD, Primitive::String(StringType::JSON, text))
    }

    /// Reads a `GetMetadata` result, bounded before parsing.
    pub fn from_infotable(t: &InfoTable) -> Result<Self, MetadataError> {
        let text = match t.get(0, RESULT_FIELD) {
            Some(Primitive::String(_, s)) => s,
            Some(Primitive::Variant(inner)) => match inner.as_ref() {
                Primitive::String(_, s) => s,
                _ => return Err(MetadataError::NoResult),
            },
            _ => return Err(MetadataError::NoResult),
        };
        if text.len() > MAX_METADATA_JSON {
            return Err(MetadataError::TooLarge(text.len()));
        }
        serde_json::from_str(text).map_err(|e| MetadataError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
