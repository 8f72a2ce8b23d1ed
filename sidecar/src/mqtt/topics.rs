//! Topic names and payloads of the layouts (`mqtt.topics.preset`).

use serde_json::{json, Map, Value};

use super::config::{TopicPreset, TopicsConfig};
use super::sparkplug::{self, Session};
use crate::tunnel::outbox::Update;

/// Topics and payloads of one layout.
#[derive(Debug, Clone)]
pub struct Layout {
    preset: TopicPreset,
    prefix: String,
    gateway: String,
    /// The MQTT client id: Azure IoT Hub's device id.
    device: String,
}

/// Azure IoT Hub's property bag on every message: JSON in UTF-8, so routing queries can read it.
const AZURE_CONTENT: &str = "$.ct=application%2Fjson&$.ce=utf-8";

impl Layout {
    /// The layout `config` names for `gateway`, connected as client id `device`.
    pub fn new(config: &TopicsConfig, gateway: &str, device: &str) -> Self {
        Self {
            preset: config.preset,
            prefix: config.prefix.clone(),
            gateway: gateway.to_owned(),
            device: device.to_owned(),
        }
    }

    /// Where an update (a property value or a fired event) is published, and its payload
    /// (Sparkplug: numbered in session `s`).
    pub fn update(&self, s: &mut Session, u: &Update) -> (String, Vec<u8>) {
        match self.preset {
            TopicPreset::SparkplugB => (
                self.sparkplug("DDATA", Some(&u.thing)),
                sparkplug::ddata(s, u),
            ),
            TopicPreset::AzureIotHub => {
                // Device-to-cloud messages: the thing and the property (or event) in the
                // message's properties, where IoT Hub routes can filter on them.
                let (kind, payload) = if u.event {
                    ("event", json!({"time": u.time_ms, "data": u.value}))
                } else {
                    (
                        "property",
                        json!({"value": u.value, "time": u.time_ms, "quality": u.quality.as_str()}),
                    )
                };
                let topic = format!(
                    "{}thing={}&{kind}={}&{AZURE_CONTENT}",
                    self.azure_events(),
                    bag_value(&u.thing),
                    bag_value(&u.property)
                );
                (topic, payload.to_string().into_bytes())
            }
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

    /// Whether this is the Sparkplug B layout, whose births are NBIRTH and a DBIRTH per thing.
    pub fn is_sparkplug(&self) -> bool {
        self.preset == TopicPreset::SparkplugB
    }

    /// The last will of connection `bd_seq`: topic, payload, retained. Sparkplug: NDEATH;
    /// otherwise `{"online": false}` on the state topic.
    pub fn will(&self, bd_seq: u64) -> (String, Vec<u8>, bool) {
        match self.preset {
            TopicPreset::SparkplugB => (
                self.sparkplug("NDEATH", None),
                sparkplug::ndeath(bd_seq),
                false,
            ),
            _ => (self.state_topic(), Layout::state_payload(false), true),
        }
    }

    /// A Sparkplug topic of this node (`device`: one of its things).
    pub fn sparkplug(&self, kind: &str, device: Option<&str>) -> String {
        let node = format!("spBv1.0/{}/{kind}/{}", self.prefix, level(&self.device));
        match device {
            Some(d) => format!("{node}/{}", level(d)),
            None => node,
        }
    }

    /// The gateway's connection-state topic (retained birth and last will). IoT Hub takes
    /// publishes (and a last will) only on the device's events topic: there, a message whose
    /// `kind` property is `state`.
    pub fn state_topic(&self) -> String {
        match self.preset {
            TopicPreset::AzureIotHub => format!(
                "{}kind=state&gateway={}&{AZURE_CONTENT}",
                self.azure_events(),
                bag_value(&self.gateway)
            ),
            _ => format!("{}/gateways/{}/state", self.prefix, level(&self.gateway)),
        }
    }

    /// IoT Hub's device-to-cloud topic of this device, up to its property bag.
    fn azure_events(&self) -> String {
        format!("devices/{}/messages/events/", level(&self.device))
    }

    /// The state payload: `{"online": true}` as birth, `false` as last will.
    pub fn state_payload(online: bool) -> Vec<u8> {
        json!({ "online": online }).to_string().into_bytes()
    }

    /// The topic filters commands arrive on.
    pub fn command_filters(&self) -> Vec<String> {
        if self.preset == TopicPreset::SparkplugB {
            return vec![
                self.sparkplug("NCMD", None),
                format!("{}/+", self.sparkplug("DCMD", None)),
            ];
        }
        if self.preset == TopicPreset::AzureIotHub {
            // IoT Hub refuses any other subscription (and closes the connection).
            return vec![
                "$iothub/methods/POST/#".into(),
                "$iothub/twin/PATCH/properties/desired/#".into(),
            ];
        }
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
        if self.preset == TopicPreset::AzureIotHub {
            return azure_command(topic);
        }
        if self.preset == TopicPreset::SparkplugB {
            if topic == self.sparkplug("NCMD", None) {
                return Some(Target::NodeCommand);
            }
            let thing = topic
                .strip_prefix(&self.sparkplug("DCMD", None))?
                .strip_prefix('/')?;
            return (!thing.contains('/'))
                .then(|| unlevel(thing))
                .flatten()
                .map(|thing| Target::DeviceCommand { thing });
        }
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

    /// The answer message to a command on `target`: its topic and payload. `answer` is
    /// [`super::commands`]' JSON (`status`, `result` or `error`, `results` of a patch).
    pub fn reply(&self, s: &mut Session, target: &Target, answer: Value) -> (String, Vec<u8>) {
        let status = answer["status"].as_u64().unwrap_or(500);
        match target {
            // Sparkplug: the outcome of each DCMD metric as `Results/<metric>` in DDATA (a
            // refused command as a whole under `Results/DCMD`).
            Target::DeviceCommand { thing } => {
                let results = match answer.get("results") {
                    Some(Value::Object(r)) => r.clone(),
                    _ => Map::from_iter([("DCMD".to_owned(), answer)]),
                };
                (
                    self.sparkplug("DDATA", Some(thing)),
                    sparkplug::results(s, &results),
                )
            }
            Target::NodeCommand => (
                self.sparkplug("NDATA", None),
                sparkplug::results(s, &Map::from_iter([("NCMD".to_owned(), answer)])),
            ),
            // IoT Hub: the status in the topic, the method's result (or the error) as the body.
            Target::Method { rid, .. } => {
                let body = match (answer.get("result"), answer.get("error")) {
                    (_, Some(e)) => json!({ "error": e }),
                    (Some(r), None) => r.clone(),
                    (None, None) => json!({}),
                };
                (
                    format!("$iothub/methods/res/{status}/?$rid={}", bag_value(rid)),
                    body.to_string().into_bytes(),
                )
            }
            // IoT Hub: the outcome of a desired-properties patch reported back into the twin,
            // as IoT Plug and Play acknowledges writable properties (each thing a component).
            Target::Desired => {
                let version = answer["id"].clone();
                let mut patch = Map::new();
                let ack = |r: &Value| {
                    let mut ack = json!({"value": r["value"], "ac": r["status"], "av": version});
                    if let Some(e) = r.get("error") {
                        ack["ad"] = e.clone();
                    }
                    ack
                };
                if let Some(Value::Object(things)) = answer.get("results") {
                    for (key, r) in things {
                        // A key refused as a whole (not a thing) is acknowledged at the root.
                        if r.get("status").is_some_and(Value::is_number) {
                            patch.insert(key.clone(), ack(r));
                            continue;
                        }
                        let mut component = Map::new();
                        component.insert("__t".into(), json!("c"));
                        for (property, r) in r.as_object().into_iter().flatten() {
                            component.insert(property.clone(), ack(r));
                        }
                        patch.insert(key.clone(), Value::Object(component));
                    }
                }
                let rid = match &version {
                    Value::Number(n) => format!("desired-{n}"),
                    _ => "desired".into(),
                };
                (
                    format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}"),
                    Value::Object(patch).to_string().into_bytes(),
                )
            }
            // Beside the request, the answer whole (its `id` correlates).
            Target::Service { thing, service } => (
                format!(
                    "{}/{}/services/{}/response",
                    self.prefix,
                    level(thing),
                    level(service)
                ),
                answer.to_string().into_bytes(),
            ),
            Target::Write { thing, property } => (
                format!(
                    "{}/{}/properties/{}/set/response",
                    self.prefix,
                    level(thing),
                    level(property)
                ),
                answer.to_string().into_bytes(),
            ),
            Target::Delta { thing } => (
                format!("{}/{}/shadow/delta/response", self.prefix, level(thing)),
                answer.to_string().into_bytes(),
            ),
        }
    }
}

/// An IoT Hub command topic: a direct method `$iothub/methods/POST/<thing>.<service>/?$rid=<id>`
/// or a desired-properties patch `$iothub/twin/PATCH/properties/desired/?$version=<n>`.
fn azure_command(topic: &str) -> Option<Target> {
    if let Some(rest) = topic.strip_prefix("$iothub/methods/POST/") {
        let (method, query) = rest.split_once("/?")?;
        let rid = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("$rid="))?
            .to_owned();
        // A thing's name may hold dots; a service's rarely does: the last dot separates them.
        let (thing, service) = method.rsplit_once('.').unwrap_or((method, ""));
        return Some(Target::Method {
            rid,
            thing: thing.to_owned(),
            service: service.to_owned(),
        });
    }
    let rest = topic.strip_prefix("$iothub/twin/PATCH/properties/desired/")?;
    (rest.is_empty() || rest.starts_with('?')).then_some(Target::Desired)
}

/// A value in an IoT Hub property bag (or query): URL-encoded, only unreserved characters left
/// as they are, so `&`, `=` and `/` in names cannot split or end the bag.
fn bag_value(v: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    if v.bytes().all(plain) {
        return v.into();
    }
    let mut out = String::with_capacity(v.len() + 8);
    for b in v.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.into()
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
    /// An IoT Hub direct method `<thing>.<service>`: a service call answered by request id.
    Method {
        /// IoT Hub's request id, echoed in the answer's topic.
        rid: String,
        /// The thing.
        thing: String,
        /// The service (empty when the method name has no dot).
        service: String,
    },
    /// An IoT Hub desired-properties patch: `{<thing>: {<property>: <value>}, "$version": n}`,
    /// writes of every property it names.
    Desired,
    /// A Sparkplug DCMD: writes (a metric per property) and service calls
    /// (`Services/<service>`) on one thing.
    DeviceCommand {
        /// The thing (the Sparkplug device).
        thing: String,
    },
    /// A Sparkplug NCMD to the node (`Node Control/Rebirth`).
    NodeCommand,
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
        let l = Layout::new(&TopicsConfig::default(), "gw-1", "gw-1-0");
        let (topic, payload) = l.update(
            &mut Session::default(),
            &update("pump-1", "temperature", false),
        );
        assert_eq!(topic, "edgeway/pump-1/properties/temperature");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            v,
            json!({"value": 21.5, "time": 1_700_000_000_000i64, "quality": "GOOD"})
        );
        let (topic, payload) =
            l.update(&mut Session::default(), &update("pump-1", "Overheat", true));
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
        let l = Layout::new(&config, "gw", "gw-0");
        let (topic, payload) = l.update(
            &mut Session::default(),
            &update("pump-1", "temperature", false),
        );
        assert_eq!(topic, "$aws/things/pump-1/shadow/update");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v, json!({"state": {"reported": {"temperature": 21.5}}}));
        // Events have no place in a shadow: they go where `generic` puts them.
        let (topic, _) = l.update(&mut Session::default(), &update("pump-1", "Overheat", true));
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
            l.reply(&mut Session::default(), &delta, json!({"status": 200}))
                .0,
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
        let generic = Layout::new(&TopicsConfig::default(), "gw", "gw-0");
        assert_eq!(
            generic.command("$aws/things/pump-1/shadow/update/delta"),
            None
        );
    }

    #[test]
    fn azure_iot_hub_messages_methods_and_desired_patches() {
        let config = TopicsConfig {
            preset: TopicPreset::AzureIotHub,
            prefix: "unused".into(),
        };
        let l = Layout::new(&config, "plant1", "plant1-0");
        let (topic, payload) = l.update(
            &mut Session::default(),
            &update("pump 1&2", "temperature", false),
        );
        assert_eq!(
            topic,
            "devices/plant1-0/messages/events/thing=pump%201%262&property=temperature&$.ct=application%2Fjson&$.ce=utf-8"
        );
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["value"], 21.5);
        let (topic, _) = l.update(&mut Session::default(), &update("pump", "Overheat", true));
        assert!(
            topic.starts_with("devices/plant1-0/messages/events/thing=pump&event=Overheat&"),
            "{topic}"
        );
        assert!(
            l.state_topic()
                .starts_with("devices/plant1-0/messages/events/kind=state&gateway=plant1&"),
            "{}",
            l.state_topic()
        );
        // Only IoT Hub's own filters: it refuses any other subscription.
        assert_eq!(
            l.command_filters(),
            [
                "$iothub/methods/POST/#",
                "$iothub/twin/PATCH/properties/desired/#"
            ]
        );

        // A direct method: the last dot splits thing and service; the answer's topic carries
        // the status and the request id, its body the result (or the error).
        let call = l
            .command("$iothub/methods/POST/plant.meter.Reset/?$rid=2a")
            .unwrap();
        assert_eq!(
            call,
            Target::Method {
                rid: "2a".into(),
                thing: "plant.meter".into(),
                service: "Reset".into()
            }
        );
        let (topic, body) = l.reply(
            &mut Session::default(),
            &call,
            json!({"id": null, "status": 200, "result": 5}),
        );
        assert_eq!(topic, "$iothub/methods/res/200/?$rid=2a");
        assert_eq!(body, b"5");
        let (topic, body) = l.reply(
            &mut Session::default(),
            &call,
            json!({"status": 404, "error": "no such service"}),
        );
        assert_eq!(topic, "$iothub/methods/res/404/?$rid=2a");
        assert_eq!(body, br#"{"error":"no such service"}"#);
        let (_, body) = l.reply(&mut Session::default(), &call, json!({"status": 200}));
        assert_eq!(body, b"{}");
        assert_eq!(
            l.command("$iothub/methods/POST/Reset/?$rid=1"),
            Some(Target::Method {
                rid: "1".into(),
                thing: "Reset".into(),
                service: String::new()
            })
        );

        // A desired patch: each property's outcome reported back, each thing a component.
        let patch = l
            .command("$iothub/twin/PATCH/properties/desired/?$version=4")
            .unwrap();
        assert_eq!(patch, Target::Desired);
        let answer = json!({"id": 4, "status": 400, "results": {
            "pump": {"speed": {"value": 3, "status": 200},
                     "mode": {"value": 1, "status": 400, "error": "not a STRING"}},
            "interval": {"value": 5, "status": 400, "error": "not a thing"}}});
        let (topic, body) = l.reply(&mut Session::default(), &patch, answer);
        assert_eq!(
            topic,
            "$iothub/twin/PATCH/properties/reported/?$rid=desired-4"
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({
                "pump": {"__t": "c",
                         "speed": {"value": 3, "ac": 200, "av": 4},
                         "mode": {"value": 1, "ac": 400, "av": 4, "ad": "not a STRING"}},
                "interval": {"value": 5, "ac": 400, "av": 4, "ad": "not a thing"}
            })
        );

        for not_a_command in [
            "$iothub/methods/POST/pump.Reset/",
            "$iothub/methods/POST/pump.Reset",
            "$iothub/twin/PATCH/properties/reported/?$rid=1",
            "$iothub/twin/PATCH/properties/desired/extra",
            "devices/plant1-0/messages/devicebound/x",
            "unused/pump/services/Reset/request",
        ] {
            assert_eq!(l.command(not_a_command), None, "{not_a_command}");
        }
    }

    #[test]
    fn sparkplug_topics_name_the_node_and_its_devices() {
        let config = TopicsConfig {
            preset: TopicPreset::SparkplugB,
            prefix: "plant".into(),
        };
        let l = Layout::new(&config, "gw", "gw-0");
        let mut s = Session::default();
        let (topic, _) = l.update(&mut s, &update("pump/1", "temperature", false));
        assert_eq!(topic, "spBv1.0/plant/DDATA/gw-0/pump%2F1");
        assert_eq!(
            l.command_filters(),
            ["spBv1.0/plant/NCMD/gw-0", "spBv1.0/plant/DCMD/gw-0/+"]
        );
        assert_eq!(
            l.command("spBv1.0/plant/DCMD/gw-0/pump%2F1"),
            Some(Target::DeviceCommand {
                thing: "pump/1".into()
            })
        );
        assert_eq!(
            l.command("spBv1.0/plant/NCMD/gw-0"),
            Some(Target::NodeCommand)
        );
        for not_a_command in [
            "spBv1.0/plant/DCMD/gw-1/pump",
            "spBv1.0/plant/DCMD/gw-0/a/b",
            "spBv1.0/plant/DDATA/gw-0/pump",
            "spBv1.0/other/NCMD/gw-0",
        ] {
            assert_eq!(l.command(not_a_command), None, "{not_a_command}");
        }
        let (topic, _, retain) = l.will(4);
        assert_eq!(
            (topic.as_str(), retain),
            ("spBv1.0/plant/NDEATH/gw-0", false)
        );
    }

    #[test]
    fn names_cannot_leave_their_topic_level_or_become_wildcards() {
        let l = Layout::new(&TopicsConfig::default(), "gw", "gw-0");
        let (topic, _) = l.update(&mut Session::default(), &update("a/b", "x+#", false));
        assert_eq!(topic, "edgeway/a%2Fb/properties/x%2B%23");
        assert_eq!(level("100%"), "100%25");
        assert_eq!(level("plain-name_1.2"), "plain-name_1.2");
    }

    #[test]
    fn command_topics_name_their_target_and_answer_beside_it() {
        let l = Layout::new(&TopicsConfig::default(), "gw", "gw-0");
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
            l.reply(&mut Session::default(), &call, json!({"status": 200}))
                .0,
            "edgeway/a%2Fb/services/Reset/response"
        );
        let write = l.command("edgeway/pump/properties/speed/set").unwrap();
        assert_eq!(
            l.reply(&mut Session::default(), &write, json!({"status": 200}))
                .0,
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
