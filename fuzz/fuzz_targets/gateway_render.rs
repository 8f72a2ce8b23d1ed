//! An EdgeGateway spec (JSON, as the API server stores it) rendered into the sidecar's config
//! as the operator does: whatever deserializes must render or fail with an error, and what
//! renders must pass the sidecar's own validation or be refused with a reason.
#![no_main]

use edgeway_operator::crd::EdgeGatewaySpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<EdgeGatewaySpec>(data) else {
        return;
    };
    if let Ok(config) = edgeway_operator::resources::config::render(&spec, "fuzz") {
        let _ = config.validate();
    }
});
