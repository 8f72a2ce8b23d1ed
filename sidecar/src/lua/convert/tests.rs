use super::*;
use mlua::Lua;

/// `t = {t, t}` per level: 2^40 values as JSON from a few hundred bytes of Lua.
#[test]
fn shared_subtables_are_counted_each_time_they_are_copied() {
    let lua = Lua::new();
    let shared: Value = lua
        .load("local t = {} for _ = 1, 40 do t = { t, t } end return t")
        .eval()
        .expect("script runs");
    let err = to_json_within(&shared, 10_000, 1 << 20).unwrap_err();
    assert!(err.contains("over 10000 values"), "{err}");
    // Below the bounds, the same kind of value converts.
    let small: Value = lua
        .load("local t = {} for _ = 1, 3 do t = { t, t } end return t")
        .eval()
        .expect("script runs");
    let json = to_json_within(&small, 10_000, 1 << 20).expect("converts");
    assert_eq!(json.to_string(), "[[[{},{}],[{},{}]],[[{},{}],[{},{}]]]");
}
