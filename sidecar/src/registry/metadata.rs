//! A thing's definitions in the `GetMetadata` layout ([`ThingMetadata`]), built from what
//! runs it: a Lua thing's template, or a simulated device's properties plus the services of
//! the fleet's template. ThingWorx reads this to browse an edge thing's properties and
//! services; Edgeway's platform reads it to send subscription rows per property.

use serde_json::{json, Map};

use edgeway_protocol::metadata::{
    EventDefinition, FieldDefinition, OutputDefinition, PropertyDefinition, ServiceDefinition,
    ShapeDefinition, ThingMetadata,
};

use super::Registry;
use crate::lua::{EventDef, FieldDef, PropertyDef, PushType, ServiceDef};
use edgeway_protocol::basetype::BaseType;

impl Registry {
    /// The definitions of `thing`, or `None` when no such thing runs here.
    pub fn metadata(&self, thing: &str) -> Option<ThingMetadata> {
        if let Some(info) = self.lua.describe(thing) {
            return Some(describe(
                thing,
                &info.properties,
                &info.services,
                &info.events,
            ));
        }
        let (sim, _) = self.device(thing)?;
        // Simulated values change on every tick: each is pushed (ALWAYS).
        let properties: Vec<PropertyDef> = sim
            .schema
            .properties()
            .iter()
            .map(|p| PropertyDef {
                name: p.name.clone(),
                base_type: p.base_type,
                push_type: PushType::Always,
                push_threshold: 0.0,
                description: String::new(),
            })
            .collect();
        let template = sim
            .schema
            .template()
            .and_then(|t| self.lua.describe_prototype(t));
        let (services, mut events) = template
            .map(|info| (info.services.clone(), info.events.clone()))
            .unwrap_or_default();
        // Threshold events carry the property's name and the value that crossed.
        events.extend(sim.schema.events().iter().map(|e| EventDef {
            name: e.name.clone(),
            fields: vec![
                FieldDef {
                    name: "property".into(),
                    base_type: BaseType::String,
                    description: String::new(),
                },
                FieldDef {
                    name: "value".into(),
                    base_type: BaseType::Number,
                    description: String::new(),
                },
            ],
            description: format!("{} crossed its threshold", e.property),
        }));
        Some(describe(thing, &properties, &services, &events))
    }
}

fn describe(
    thing: &str,
    properties: &[PropertyDef],
    services: &[ServiceDef],
    events: &[EventDef],
) -> ThingMetadata {
    ThingMetadata {
        name: thing.to_owned(),
        property_definitions: properties
            .iter()
            .map(|p| (p.name.clone(), property(p)))
            .collect(),
        service_definitions: services
            .iter()
            .map(|s| (s.name.clone(), service(s)))
            .collect(),
        event_definitions: events.iter().map(|e| (e.name.clone(), event(e))).collect(),
        ..ThingMetadata::default()
    }
}

/// The push type as ThingWorx spells it (the LSR's ON/OFF are VALUE/NEVER there).
fn push_type_name(t: PushType) -> &'static str {
    match t {
        PushType::Always => "ALWAYS",
        PushType::Value | PushType::On => "VALUE",
        PushType::Never | PushType::Off => "NEVER",
    }
}

fn property(p: &PropertyDef) -> PropertyDefinition {
    let mut aspects = Map::new();
    aspects.insert("pushType".into(), json!(push_type_name(p.push_type)));
    aspects.insert("pushThreshold".into(), json!(p.push_threshold));
    PropertyDefinition {
        name: p.name.clone(),
        description: p.description.clone(),
        base_type: p.base_type.name().to_owned(),
        aspects,
    }
}

fn field(f: &FieldDef) -> FieldDefinition {
    FieldDefinition {
        name: f.name.clone(),
        base_type: f.base_type.name().to_owned(),
        description: f.description.clone(),
        aspects: Map::new(),
    }
}

fn service(s: &ServiceDef) -> ServiceDefinition {
    ServiceDefinition {
        name: s.name.clone(),
        description: s.description.clone(),
        aspects: Map::new(),
        inputs: ShapeDefinition {
            field_definitions: s
                .inputs
                .iter()
                .map(|f| (f.name.clone(), field(f)))
                .collect(),
            aspects: Map::new(),
        },
        // The SDK names every output `result`; an untyped service returns a VARIANT here.
        outputs: Some(OutputDefinition {
            name: "result".to_owned(),
            base_type: s
                .output
                .as_ref()
                .map_or("VARIANT", |o| o.base_type.name())
                .to_owned(),
            field_definitions: Default::default(),
        }),
    }
}

/// An event as `getMetadataService` writes it: the data shape under `EventData`, named after
/// the event (`aspects.dataShape`).
fn event(e: &EventDef) -> EventDefinition {
    EventDefinition {
        name: e.name.clone(),
        description: e.description.clone(),
        aspects: Map::new(),
        event_data: ShapeDefinition {
            field_definitions: e
                .fields
                .iter()
                .map(|f| (f.name.clone(), field(f)))
                .collect(),
            aspects: Map::from_iter([("dataShape".to_owned(), json!(e.name))]),
        },
    }
}
