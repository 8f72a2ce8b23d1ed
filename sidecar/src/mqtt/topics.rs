//! Topic names and payloads of the layouts (`mqtt.topics.preset`).

use serde_json::json;

use super::config::{TopicPreset, TopicsConfig};
use crate::tunnel::outbox::Update;

/// Topics and payloads of one layout.
#[derive(Debug, Clone)]
pub struct Layout {
    preset: TopicPreset,
    prefix: String,
    gateway: String,
}

impl Layout {
    /// The layout `config` names for `gateway`.
    pub fn new(config: &TopicsConfig, gateway: &str) -> Self {
        Self {
            preset: config.preset,
            prefix: config.prefix.clone(),
            gateway: gateway.to_owned(),
        }
    }

    /// Where an update (a property value or a fired event) is published, and its payload.
    pub fn update(&self, u: &Update) -> (String, Vec<u8>) {
        match self.preset {
            TopicPreset::Generic => {
                let kind = if u.event { "events" } else { "properties" };
                let topic = format!(
                    "{}/{}/{kind}/{}",
                    self.prefix,
                    level(&u.thing),
                    level(&u.property)
                );
                let payload = if u.event {
                    json!({"time": u.time_ms, "data": u.value})
                } else {
                    json!({"value": u.value, "time": u.time_ms, "quality": u.quality.as_str()})
                };
                (topic, payload.to_string().into_bytes())
            }
        }
    }

    /// The gateway's connection-state topic (retained birth and last will).
    pub fn state_topic(&self) -> String {
        match self.preset {
            TopicPreset::Generic => {
                format!("{}/gateways/{}/state", self.prefix, level(&self.gateway))
            }
        }
    }

    /// The state payload: `{"online": true}` as birth, `false` as last will.
    pub fn state_payload(online: bool) -> Vec<u8> {
        json!({ "online": online }).to_string().into_bytes()
    }
}

/// A name as one topic level: `/`, `+`, `#` and `%` percent-encoded, so a thing named `a/b`
/// cannot publish into another thing's topics and no name becomes a wildcard.
pub fn level(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.contains(['/', '+', '#', '%', '\0']) {
        return name.into();
    }
    let mut out = String::with_capacity(name.len() + 6);
    for c in name.chars() {
        match c {
            '/' => out.push_str("%2F"),
            '+' => out.push_str("%2B"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            '\0' => out.push_str("%00"),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeway_protocol::basetype::{BaseType, Quality};

    fn update(thing: &str, property: &str, event: bool) -> Update {
        Update {
            thing: thing.into(),
            property: property.into(),
            base_type: BaseType::Number,
            value: json!(21.5),
            time_ms: 1_700_000_000_000,
            quality: Quality::Good,
            event,
        }
    }

    #[test]
    fn generic_topics_and_payloads() {
        let l = Layout::new(&TopicsConfig::default(), "gw-1");
        let (topic, payload) = l.update(&update("pump-1", "temperature", false));
        assert_eq!(topic, "edgeway/pump-1/properties/temperature");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            v,
            json!({"value": 21.5, "time": 1_700_000_000_000i64, "quality": "GOOD"})
        );
        let (topic, payload) = l.update(&update("pump-1", "Overheat", true));
        assert_eq!(topic, "edgeway/pump-1/events/Overheat");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v, json!({"time": 1_700_000_000_000i64, "data": 21.5}));
        assert_eq!(l.state_topic(), "edgeway/gateways/gw-1/state");
    }

    #[test]
    fn names_cannot_leave_their_topic_level_or_become_wildcards() {
        let l = Layout::new(&TopicsConfig::default(), "gw");
        let (topic, _) = l.update(&update("a/b", "x+#", false));
        assert_eq!(topic, "edgeway/a%2Fb/properties/x%2B%23");
        assert_eq!(level("100%"), "100%25");
        assert_eq!(level("plain-name_1.2"), "plain-name_1.2");
    }
}
