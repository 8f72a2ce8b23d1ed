//! Property pushes and subscriptions, built the way the Edge C SDK builds them
//! (twApi.c: `twApi_PushProperties`, `twPushPropertiesForeachHandler`,
//! `subscribedPropertyUpdateTaskForEachHandler`, `notifyPropertyUpdateHandler`).
//!
//! `UpdateSubscribedPropertyValues` takes one parameter `values` (INFOTABLE) whose single
//! row holds a NamedVTQ table: `name` STRING, `value` VARIANT, `time` DATETIME,
//! `quality` STRING.

use super::infotable::{DataShape, FieldDefinition, InfoTable};
use super::message::Message;
use super::primitive::{Primitive, StringType};
use super::types::WireType;
use super::wire::CodecError;

/// Service the edge calls to push property values.
pub const UPDATE_SUBSCRIBED_PROPERTY_VALUES: &str = "UpdateSubscribedPropertyValues";
/// Service the platform calls when a bound thing's subscriptions changed.
pub const NOTIFY_PROPERTY_UPDATE: &str = "NotifyPropertyUpdate";
/// Service the edge calls to learn which properties to push and how.
pub const GET_PROPERTY_SUBSCRIPTIONS: &str = "GetPropertySubscriptions";
/// Service the platform calls to read the edge thing's metadata (answered with JSON).
pub const GET_METADATA: &str = "GetMetadata";
/// Quality the SDK sends when none is given.
pub const QUALITY_GOOD: &str = "GOOD";

/// One property value to push: name, value, time (epoch ms) and quality.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyUpdate {
    /// Property name.
    pub name: String,
    /// The value (sent wrapped in a VARIANT).
    pub value: Primitive,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    /// Quality string, normally "GOOD".
    pub quality: String,
}

impl PropertyUpdate {
    /// An update with quality GOOD.
    pub fn good(name: impl Into<String>, value: Primitive, time: i64) -> Self {
        Self {
            name: name.into(),
            value,
            time,
            quality: QUALITY_GOOD.to_owned(),
        }
    }
}

/// The NamedVTQ data shape: name STRING, value VARIANT, time DATETIME, quality STRING.
pub fn named_vtq_shape() -> DataShape {
    DataShape::new(vec![
        FieldDefinition::new("name", WireType::String),
        FieldDefinition::new("value", WireType::Variant),
        FieldDefinition::new("time", WireType::Datetime),
        FieldDefinition::new("quality", WireType::String),
    ])
}

/// The inner NamedVTQ table, one row per update (values wrapped in VARIANT once).
pub fn vtq_table(updates: &[PropertyUpdate]) -> InfoTable {
    let mut table = InfoTable::new(named_vtq_shape());
    for u in updates {
        let value = match &u.value {
            v @ Primitive::Variant(_) => v.clone(),
            v => Primitive::variant(v.clone()),
        };
        table.rows.push(vec![
            Primitive::string(u.name.clone()),
            value,
            Primitive::Datetime(u.time),
            Primitive::string(u.quality.clone()),
        ]);
    }
    table
}

/// The service parameters: field `values` (INFOTABLE) with one row holding the VTQ table.
pub fn update_params(updates: &[PropertyUpdate]) -> InfoTable {
    InfoTable::from_primitive("values", Primitive::InfoTable(Box::new(vtq_table(updates))))
}

/// Reads updates back from either the parameter table or the inner VTQ table.
pub fn read_updates(table: &InfoTable) -> Result<Vec<PropertyUpdate>, CodecError> {
    if let Some(Primitive::InfoTable(inner)) = table.get(0, "values") {
        return read_updates(inner);
    }
    let bad = |what: &str| CodecError::Json {
        expected: "a NamedVTQ row",
        got: what.to_owned(),
    };
    let mut out = Vec::with_capacity(table.rows.len());
    for i in 0..table.rows.len() {
        let name = table
            .get(i, "name")
            .and_then(Primitive::as_str)
            .ok_or_else(|| bad("no string `name`"))?
            .to_owned();
        let value = match table.get(i, "value") {
            Some(Primitive::Variant(inner)) => (**inner).clone(),
            Some(other) => other.clone(),
            None => Primitive::Nothing,
        };
        let time = match table.get(i, "time") {
            Some(Primitive::Datetime(t) | Primitive::Long(t)) => *t,
            Some(Primitive::Nothing) | None => 0,
            Some(_) => return Err(bad("`time` is not a DATETIME")),
        };
        let quality = table
            .get(i, "quality")
            .and_then(Primitive::as_str)
            .unwrap_or(QUALITY_GOOD)
            .to_owned();
        out.push(PropertyUpdate {
            name,
            value,
            time,
            quality,
        });
    }
    Ok(out)
}

/// How the platform wants one property pushed, from a `GetPropertySubscriptions` result row.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertySubscription {
    /// Property name on the edge (`edgeName`).
    pub edge_name: String,
    /// Push type, e.g. ALWAYS, VALUE, NEVER, DEADBAND (`pushType`).
    pub push_type: Option<String>,
    /// Threshold for VALUE/DEADBAND pushes (`pushThreshold`).
    pub push_threshold: Option<f64>,
}

/// Reads the rows of a `GetPropertySubscriptions` result (fields the SDK reads only).
pub fn read_subscriptions(table: &InfoTable) -> Vec<PropertySubscription> {
    (0..table.rows.len())
        .filter_map(|i| {
            let edge_name = table.get(i, "edgeName")?.as_str()?.to_owned();
            let push_type = table
                .get(i, "pushType")
                .and_then(Primitive::as_str)
                .map(str::to_owned);
            let push_threshold = match table.get(i, "pushThreshold") {
                Some(Primitive::Number(n)) => Some(*n),
                Some(Primitive::Integer(n)) => Some(f64::from(*n)),
                _ => None,
            };
            Some(PropertySubscription {
                edge_name,
                push_type,
                push_threshold,
            })
        })
        .collect()
}

/// Parameters the SDK sends with `GetPropertySubscriptions`: `options` (JSON) = `{"hasDeadband":true}`.
pub fn subscription_options() -> InfoTable {
    InfoTable::from_primitive(
        "options",
        Primitive::String(StringType::JSON, r#"{"hasDeadband":true}"#.to_owned()),
    )
}

impl Message {
    /// POST `UpdateSubscribedPropertyValues` on `thing` with the given updates.
    pub fn update_subscribed_property_values(
        request_id: u32,
        thing: &str,
        updates: &[PropertyUpdate],
    ) -> Self {
        Message::invoke_service(
            request_id,
            thing,
            UPDATE_SUBSCRIBED_PROPERTY_VALUES,
            Some(update_params(updates)),
        )
    }

    /// POST `GetPropertySubscriptions` on `thing`, announcing deadband support like the SDK.
    pub fn get_property_subscriptions(request_id: u32, thing: &str) -> Self {
        Message::invoke_service(
            request_id,
            thing,
            GET_PROPERTY_SUBSCRIPTIONS,
            Some(subscription_options()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_round_trip_through_the_params_table() {
        let ups = vec![
            PropertyUpdate::good("temp", Primitive::Number(21.5), 1_700_000_000_000),
            PropertyUpdate {
                name: "on".into(),
                value: Primitive::Boolean(true),
                time: 5,
                quality: "UNKNOWN".into(),
            },
        ];
        let params = update_params(&ups);
        assert_eq!(params.shape.fields[0].base_type, WireType::InfoTable);
        let bytes = params.to_bytes();
        let back = InfoTable::from_bytes(&bytes).unwrap();
        assert_eq!(read_updates(&back).unwrap(), ups);
    }
}
