//! What a broker delivers on the gateway's command topics is anyone's: whatever the topic and
//! payload, reading it as a command of any layout (IoT Hub's query strings, Sparkplug's
//! protobuf metrics) never panics.
#![no_main]

use edgeway_sidecar::mqtt::config::{TopicPreset, TopicsConfig};
use edgeway_sidecar::mqtt::sparkplug::command_metrics;
use edgeway_sidecar::mqtt::topics::Layout;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line is the topic, the rest the payload.
    let (topic, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let topic = String::from_utf8_lossy(topic);
    for preset in [
        TopicPreset::Generic,
        TopicPreset::AwsShadow,
        TopicPreset::AzureIotHub,
        TopicPreset::SparkplugB,
    ] {
        let config = TopicsConfig {
            preset,
            prefix: "plant".into(),
        };
        let _ = Layout::new(&config, "gw", "gw-0").command(&topic);
    }
    let _ = command_metrics(payload);
});
