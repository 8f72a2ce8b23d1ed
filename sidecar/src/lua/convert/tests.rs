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

/// One big string held many times: small in Lua, huge as JSON (security review, issue 17
/// item 13: 250 references to 1 MiB took 262 MB per call). The encoded size is bounded.
#[test]
fn encoded_size_is_bounded() {
    let lua = Lua::new();
    let shared: Value = lua
        .load("local s, t = string.rep('x', 1 << 20), {} for i = 1, 250 do t[i] = s end return t")
        .eval()
        .expect("script runs");
    let err = lua_to_json(&shared, 8 << 20).unwrap_err();
    assert!(err.contains("8388608 bytes encoded"), "{err}");
    // The same shape within the bound converts, and its text is within the estimate.
    let few: Value = lua
        .load("local s, t = string.rep('x', 1 << 20), {} for i = 1, 7 do t[i] = s end return t")
        .eval()
        .expect("script runs");
    let json = lua_to_json(&few, 8 << 20).expect("converts");
    assert!(json.to_string().len() <= 8 << 20);
}
