use super::*;

const GOOD: &str = "properties.rpm = { baseType = \"NUMBER\", value = 0 }\n";

#[tokio::test]
async fn lua_errors_name_the_mounted_file_and_line() {
    let ok = BTreeMap::from([("pump".into(), GOOD.into()), ("valve".into(), GOOD.into())]);
    lua(&ok).expect("valid scripts load");
    let bad = BTreeMap::from([
        ("pump".into(), GOOD.into()),
        ("valve".into(), format!("{GOOD}\nproperties.x = = 1\n")),
    ]);
    // `valve` has no thing: it is compiled all the same.
    let p = lua(&bad).unwrap_err();
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

/// The operator never runs tenant code (security review, issue 17 item 3): top-level code that
/// raises, loops or allocates is not executed by the check; only syntax is.
#[test]
fn lua_check_compiles_without_running() {
    let hostile = BTreeMap::from([
        (
            "raises".into(),
            "error('top-level code ran in the operator')\n".into(),
        ),
        (
            "spins".into(),
            "local function spin() while true do end end\nxpcall(spin, spin)\n".into(),
        ),
        (
            "hogs".into(),
            "hog = string.rep('h', 512 * 1024 * 1024)\n".into(),
        ),
        (
            "backtracks".into(),
            "return string.find(string.rep('a', 40), '(a*)*b')\n".into(),
        ),
    ]);
    let start = std::time::Instant::now();
    lua(&hostile).expect("compiles; nothing runs");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}
