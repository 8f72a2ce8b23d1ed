//! Property pushes and subscriptions, built the way the Edge C SDK builds them
//! (twApi.c: `twApi_PushProperties`, `twPushPropertiesForeachHandler`,
//! `subscribedPropertyUpdateTaskForEachHandler`, `notifyPropertyUpdateHandler`).
//!
//! `UpdateSubscribedPropertyValues` takes one parameter `values` (INFOTABLE) whose single
//! row holds a NamedVTQ table: `name` STRING, `value` VARIANT, `time` DATETIME,
//! `quality` STRING.

use super::infotable::{DataShape, FieldDefinition, InfoTable};
use super::message::{write_header, Header, Message};
use super::primitive::{Primitive, StringType};
use super::types::{Characteristic, EntityType, Method, WireType};
use super::wire::{CodecError, Writer};

/// Service the edge calls to push property values.
pub const UPDATE_SUBSCRIBED_PROPERTY_VALUES: &str = "UpdateSubscribedPropertyValues";
/// Service the platform calls when a bound thing's subscriptions changed.
pub const NOTIFY_PROPERTY_UPDATE: &str = "NotifyPropertyUpdate";
/// Service the edge calls to learn which properties to push and how.
pub const GET_PROPERTY_SUBSCRIPTIONS: &str = "GetPropertySubscriptions";
/// Service the platform calls to read the edge thing's metadata (answered with JSON).
pub const GET_METADATA: &str = "GetMetadata";
/// Request header with which Edgeway's sidecar stamps a fired event with its firing time
/// (Unix ms, decimal), so the platform recognises a resend after a lost acknowledgement. SDK
/// edges send no headers; their events are stamped on arrival.
pub const EVENT_TIME_HEADER: &str = "eventTime";
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

/// One row of an `UpdateSubscribedPropertyValues` request, borrowed from the caller's own
/// storage, so the tunnel can encode straight from its queue (no [`PropertyUpdate`] strings,
/// no InfoTable per message).
#[derive(Debug, Clone, Copy)]
pub struct VtqRef<'a> {
    /// Property name.
    pub name: &'a str,
    /// The value (wrapped in a VARIANT on the wire unless it already is one).
    pub value: &'a Primitive,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    /// Quality string, normally "GOOD".
    pub quality: &'a str,
}

/// Writes one field definition the way [`InfoTable::encode`] does (no description, no aspects).
fn write_field(w: &mut Writer, name: &str, base_type: WireType) {
    w.u8(0x01);
    w.string(name);
    w.string("");
    w.i8(base_type.code());
    w.u16(0);
}

/// The complete single-frame encoding of
/// `Message::update_subscribed_property_values(header.request_id, thing, rows).with_session(..)`
/// with `header`'s ids, byte for byte, written without building the message: the hot path of
/// the tunnel, one call per thing per batch. Split with
/// [`split_encoded`](super::multipart::split_encoded) when it exceeds the chunk size.
///
/// # Panics
/// As [`Message::encode`]: on strings over 2 GiB.
pub fn encode_update_subscribed_property_values<'a>(
    header: &Header,
    thing: &str,
    rows: impl IntoIterator<Item = VtqRef<'a>>,
) -> Vec<u8> {
    let rows = rows.into_iter();
    // 15 header + ~80 names and shapes + ~30 per one-number row: one allocation for most.
    let mut w = Writer::with_capacity(128 + thing.len() + 40 * rows.size_hint().0);
    write_header(&mut w, Method::Post.code(), header, false);
    w.u8(EntityType::Thing.code());
    w.string(thing);
    w.u8(Characteristic::Services.code());
    w.string(UPDATE_SUBSCRIBED_PROPERTY_VALUES);
    w.u8(0); // no request headers
    w.i8(WireType::InfoTable.code());
    // Parameter table: one field `values` (INFOTABLE), one row holding the NamedVTQ table.
    write_field(&mut w, "values", WireType::InfoTable);
    w.u8(0x00);
    w.u8(0x01);
    w.u16(1);
    w.i8(WireType::InfoTable.code());
    for (name, t) in [
        ("name", WireType::String),
        ("value", WireType::Variant),
        ("time", WireType::Datetime),
        ("quality", WireType::String),
    ] {
        write_field(&mut w, name, t);
    }
    w.u8(0x00);
    for r in rows {
        w.u8(0x01);
        w.u16(4);
        w.i8(WireType::String.code());
        w.string(r.name);
        w.i8(WireType::Variant.code());
        match r.value {
            Primitive::Variant(inner) => inner.encode(&mut w),
            v => v.encode(&mut w),
        }
        w.i8(WireType::Datetime.code());
        w.i64(r.time);
        w.i8(WireType::String.code());
        w.string(r.quality);
    }
    w.u8(0x00); // end of VTQ rows
    w.u8(0x00); // end of parameter rows
    w.into_bytes()
}

/// Reads updates back from either the parameter table or the inner VTQ table.
pub fn read_updates(table: &InfoTable) -> Result<Vec<PropertyUpdate>, CodecError> {
    into_updates(table.clone())
}

/// As [`read_updates`], taking the table: names, values and qualities are moved out, not
/// copied, and each column is looked up once per table, not once per row (the platform's
/// path for every pushed update).
pub fn into_updates(mut table: InfoTable) -> Result<Vec<PropertyUpdate>, CodecError> {
    if let Some(i) = table.shape.index_of("values") {
        if let Some(Primitive::InfoTable(inner)) = table.rows.get_mut(0).and_then(|r| r.get_mut(i))
        {
            let inner = std::mem::take(&mut **inner);
            return into_updates(inner);
        }
    }
    let bad = |what: &str| CodecError::Json {
        expected: "a NamedVTQ row",
        got: what.to_owned(),
    };
    let column = |name| table.shape.index_of(name);
    let (name_at, value_at, time_at, quality_at) = (
        column("name"),
        column("value"),
        column("time"),
        column("quality"),
    );
    let mut out = Vec::with_capacity(table.rows.len());
    for mut row in table.rows {
        let mut take = |at: Option<usize>| {
            at.and_then(|i| row.get_mut(i))
                .map(|v| std::mem::replace(v, Primitive::Nothing))
        };
        let name = match take(name_at) {
            Some(Primitive::String(_, s)) => s,
            _ => return Err(bad("no string `name`")),
        };
        let value = match take(value_at) {
            Some(Primitive::Variant(inner)) => *inner,
            Some(other) => other,
            None => Primitive::Nothing,
        };
        let time = match take(time_at) {
            Some(Primitive::Datetime(t) | Primitive::Long(t)) => t,
            Some(Primitive::Nothing) | None => 0,
            Some(_) => return Err(bad("`time` is not a DATETIME")),
        };
        let quality = match take(quality_at) {
            Some(Primitive::String(_, s)) => s,
            _ => QUALITY_GOOD.to_owned(),
        };
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
mod tests;
