use super::*;
use crate::crd::EdgeGatewaySpec;

fn gw(things: serde_json::Value) -> EdgeGateway {
    let spec: EdgeGatewaySpec = serde_json::from_value(serde_json::json!({
        "platform": {"url": "wss://p", "appKey": {"name": "k", "key": "k"},
                     "serverVerification": {"insecure": true}},
        "lua": {"templates": [{"name": "pump", "configMap": "s", "key": "k"},
                              {"name": "valve", "configMap": "s", "key": "v"}],
                "things": things}
    }))
    .unwrap();
    EdgeGateway::new("gw", spec)
}

const GOOD: &str = "properties.rpm = { baseType = \"NUMBER\", value = 0 }\n";

#[tokio::test]
async fn lua_errors_name_the_mounted_file_and_line() {
    let g = gw(serde_json::json!([{"name": "P1", "template": "pump"}]));
    let ok = BTreeMap::from([("pump".into(), GOOD.into()), ("valve".into(), GOOD.into())]);
    lua(&g, &ok).await.expect("valid scripts load");
    let bad = BTreeMap::from([
        ("pump".into(), GOOD.into()),
        ("valve".into(), format!("{GOOD}\nproperties.x = = 1\n")),
    ]);
    // `valve` has no thing: it is still compiled.
    let p = lua(&g, &bad).await.unwrap_err();
    assert_eq!(p.reason, "LuaError");
    assert!(
        p.message.contains("/etc/edgeway/lua/valve.lua:3"),
        "{}",
        p.message
    );
    assert!(
        !p.message.contains("edgeway-lua-"),
        "no temp path leaks: {}",
        p.message
    );
}
