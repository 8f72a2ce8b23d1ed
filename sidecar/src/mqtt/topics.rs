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
            TopicPreset::AwsShadow if !u.event => {
                let topic = format!("$aws/things/{}/shadow/update", level(&u.thing));
                let mut reported = serde_json::Map::new();
                reported.insert(u.property.to_string(), u.value.clone());
                let payload = json!({"state": {"reported": reported}});
                (topic, payload.to_string().into_bytes())
            }
            TopicPreset::Generic | TopicPreset::AwsShadow => {
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
        format!("{}/gateways/{}/state", self.prefix, level(&self.gateway))
    }

    /// The state payload: `{"online": true}` as birth, `false` as last will.
    pub fn state_payload(online: bool) -> Vec<u8> {
        json!({ "online": online }).to_string().into_bytes()
    }

    /// The topic filters commands arrive on.
    pub fn command_filters(&self) -> Vec<String> {
        let mut filters = vec![
            format!("{}/+/services/+/request", self.prefix),
            format!("{}/+/properties/+/set", self.prefix),
        ];
        if self.preset == TopicPreset::AwsShadow {
            filters.push("$aws/things/+/shadow/update/delta".into());
        }
        filters
    }

    /// What a command topic asks for: `None` when the topic is not a command of this layout.
    pub fn command(&self, topic: &str) -> Option<Target> {
        if self.preset == TopicPreset::AwsShadow {
            if let Some(rest) = topic.strip_prefix("$aws/things/") {
                return match rest.split('/').collect::<Vec<_>>().as_slice() {
                    [thing, "shadow", "update", "delta"] => Some(Target::Delta {
                        thing: unlevel(thing)?,
                    }),
                    _ => None,
                };
            }
        }
        let rest = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')?;
        let levels: Vec<&str> = rest.split('/').collect();
        match levels.as_slice() {
            [thing, "services", service, "request"] => Some(Target::Service {
                thing: unlevel(thing)?,
                service: unlevel(service)?,
            }),
            [thing, "properties", property, "set"] => Some(Target::Write {
                thing: unlevel(thing)?,
                property: unlevel(property)?,
            }),
            _ => None,
        }
    }

    /// Where the answer to a command on `target` goes.
    pub fn response_topic(&self, target: &Target) -> String {
        match target {
            Target::Service { thing, service } => format!(
                "{}/{}/services/{}/response",
                self.prefix,
                level(thing),
                level(service)
            ),
            Target::Write { thing, property } => format!(
                "{}/{}/properties/{}/set/response",
                self.prefix,
                level(thing),
                level(property)
            ),
            Target::Delta { thing } => {
                format!("{}/{}/shadow/delta/response", self.prefix, level(thing))
            }
        }
    }
}

/// What a command addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A service call on a thing.
    Service {
        /// The thing.
        thing: String,
        /// The service.
        service: String,
    },
    /// A property write on a thing.
    Write {
        /// The thing.
        thing: String,
        /// The property.
        property: String,
    },
    /// An AWS shadow delta: writes of the properties its `state` names.
    Delta {
        /// The thing.
        thing: String,
    },
}

/// A topic level back to the name [`level`] made of it; `None` when it is not one.
fn unlevel(l: &str) -> Option<String> {
    if !l.contains('%') {
        return Some(l.to_owned());
    }
    let mut out = String::with_capacity(l.len());
    let mut rest = l;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "2F" => '/',
            "2B" => '+',
            "23" => '#',
            "25" => '%',
            "00" => '\0',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
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
    fn aws_shadow_reports_properties_and_takes_deltas() {
        let config = TopicsConfig {
            preset: TopicPreset::AwsShadow,
            prefix: "plant".into(),
        };
        let l = Layout::new(&config, "gw");
        let (topic, payload) = l.update(&update("pump-1", "temperature", false));
        assert_eq!(topic, "$aws/things/pump-1/shadow/update");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v, json!({"state": {"reported": {"temperature": 21.5}}}));
        // Events have no place in a shadow: they go where `generic` puts them.
        let (topic, _) = l.update(&update("pump-1", "Overheat", true));
        assert_eq!(topic, "plant/pump-1/events/Overheat");
        assert_eq!(
            l.command_filters(),
            [
                "plant/+/services/+/request",
                "plant/+/properties/+/set",
                "$aws/things/+/shadow/update/delta"
            ]
        );
        let delta = l.command("$aws/things/pump-1/shadow/update/delta").unwrap();
        assert_eq!(
            delta,
            Target::Delta {
                thing: "pump-1".into()
            }
        );
        assert_eq!(
            l.response_topic(&delta),
            "plant/pump-1/shadow/delta/response"
        );
        for not_a_command in [
            "$aws/things/pump-1/shadow/update",
            "$aws/things/pump-1/shadow/update/accepted",
            "$aws/things/a/b/shadow/update/delta",
        ] {
            assert_eq!(l.command(not_a_command), None, "{not_a_command}");
        }
        // `generic` takes no deltas.
        let generic = Layout::new(&TopicsConfig::default(), "gw");
        assert_eq!(
            generic.command("$aws/things/pump-1/shadow/update/delta"),
            None
        );
    }

    #[test]
    fn names_cannot_leave_their_topic_level_or_become_wildcards() {
        let l = Layout::new(&TopicsConfig::default(), "gw");
        let (topic, _) = l.update(&update("a/b", "x+#", false));
        assert_eq!(topic, "edgeway/a%2Fb/properties/x%2B%23");
        assert_eq!(level("100%"), "100%25");
        assert_eq!(level("plain-name_1.2"), "plain-name_1.2");
    }

    #[test]
    fn command_topics_name_their_target_and_answer_beside_it() {
        let l = Layout::new(&TopicsConfig::default(), "gw");
        assert_eq!(
            l.command_filters(),
            ["edgeway/+/services/+/request", "edgeway/+/properties/+/set"]
        );
        let call = l.command("edgeway/a%2Fb/services/Reset/request").unwrap();
        assert_eq!(
            call,
            Target::Service {
                thing: "a/b".into(),
                service: "Reset".into()
            }
        );
        assert_eq!(
            l.response_topic(&call),
            "edgeway/a%2Fb/services/Reset/response"
        );
        let write = l.command("edgeway/pump/properties/speed/set").unwrap();
        assert_eq!(
            l.response_topic(&write),
            "edgeway/pump/properties/speed/set/response"
        );
        for not_a_command in [
            "edgeway/pump/properties/speed",
            "edgeway/pump/services/Reset/response",
            "other/pump/services/Reset/request",
            "edgeway/pump/services/Re%zzset/request",
            "edgeway/a/b/services/x/request",
        ] {
            assert_eq!(l.command(not_a_command), None, "{not_a_command}");
        }
    }
}
