use super::*;
use mlua::Lua;
use serde_json::Value as Json;

/// `t = {t, t}` per level: 2^40 values as JSON from a few hundred bytes of Lua.
#[test]
fn shared_subtables_are_counted_each_time_they_are_copied() {
    let lua = Lua::new();
    let shared: Value = lua
        .load("local t = {} for _ = 1, 40 do t = { t, t } end return t")
        .eval()
        .expect("script runs");
    let err = to_json_within(&lua, &shared, 10_000, 1 << 20).unwrap_err();
    assert!(err.contains("over 10000 values"), "{err}");
    // Below the bounds, the same kind of value converts.
    let small: Value = lua
        .load("local t = {} for _ = 1, 3 do t = { t, t } end return t")
        .eval()
        .expect("script runs");
    let json = to_json_within(&lua, &small, 10_000, 1 << 20).expect("converts");
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
    let err = lua_to_json(&lua, &shared, 8 << 20).unwrap_err();
    assert!(err.contains("8388608 bytes encoded"), "{err}");
    // The same shape within the bound converts, and its text is within the estimate.
    let few: Value = lua
        .load("local s, t = string.rep('x', 1 << 20), {} for i = 1, 7 do t[i] = s end return t")
        .eval()
        .expect("script runs");
    let json = lua_to_json(&lua, &few, 8 << 20).expect("converts");
    assert!(json.to_string().len() <= 8 << 20);
}

/// JSON built through the C API comes back as it went in: objects, arrays (nulls inside
/// keep their places as holes), integers, floats, strings with NULs and non-ASCII text.
#[test]
fn json_round_trips_through_lua() {
    let lua = Lua::new();
    let json = serde_json::json!({
        "a": 2, "b": 2.5, "s": "x\u{0}yé", "t": true, "n": null,
        "list": [1, [2, {"deep": "yes"}], "three"],
        "empty": {}
    });
    let value = json_to_lua(&lua, &json).expect("builds");
    let back = lua_to_json(&lua, &value, 1 << 20).expect("converts");
    let mut expected = json.clone();
    expected.as_object_mut().unwrap().remove("n");
    assert_eq!(back, expected);
    // Lua sees the types a script expects.
    let check: bool = lua
        .load("local d = ... return math.type(d.a) == 'integer' and d.b == 2.5 and #d.s == 5 and d.list[2][2].deep == 'yes'")
        .call(value)
        .expect("runs");
    assert!(check);
    let pairs = vec![
        ("host".to_owned(), "h".to_owned()),
        ("k".to_owned(), "1".to_owned()),
        ("k".to_owned(), "2".to_owned()),
    ];
    let table = pairs_to_lua(&lua, &pairs).expect("builds");
    assert_eq!(table.raw_get::<String>("host").unwrap(), "h");
    assert_eq!(
        table.raw_get::<String>("k").unwrap(),
        "2",
        "later duplicates win"
    );
}

/// Nesting is bounded before anything is built: 64 levels convert, 65 are an error.
#[test]
fn json_nesting_is_bounded() {
    let lua = Lua::new();
    let nested = |levels: usize| {
        let mut v = serde_json::json!(1);
        for _ in 0..levels {
            v = serde_json::json!([v]);
        }
        v
    };
    json_to_lua(&lua, &nested(MAX_DEPTH)).expect("64 levels");
    let err = json_to_lua(&lua, &nested(MAX_DEPTH + 1)).unwrap_err();
    assert!(err.to_string().contains("nested deeper than 64"), "{err}");
}

/// Hostile path: the VM's memory limit reached while a table is being built through the C
/// API is an error returned to Rust (Lua unwinds into the protected call), and the VM is
/// usable afterwards.
#[test]
fn a_memory_limit_reached_while_building_is_an_error() {
    let lua = Lua::new();
    lua.set_memory_limit(lua.used_memory() + (1 << 20))
        .expect("limit");
    let big: Vec<Json> = (0..100_000)
        .map(|i| Json::String(format!("value {i}")))
        .collect();
    let err = json_to_lua(&lua, &Json::Array(big)).unwrap_err();
    assert!(matches!(err, mlua::Error::MemoryError(_)), "{err:?}");
    let many: Vec<(String, String)> = (0..100_000)
        .map(|i| (format!("k{i}"), "v".repeat(64)))
        .collect();
    let err = pairs_to_lua(&lua, &many).unwrap_err();
    assert!(matches!(err, mlua::Error::MemoryError(_)), "{err:?}");
    let sum: i64 = lua.load("return 1 + 2").eval().expect("still usable");
    assert_eq!(sum, 3);
}

/// A property entry read in one call: value and quality of a table entry; a replaced entry
/// is reported by its type.
#[test]
fn property_fields_read_raw() {
    let lua = Lua::new();
    let props: mlua::Table = lua
        .load("return setmetatable({ p = { value = 7, quality = 'BAD' }, q = 5 }, { __index = function() error('no metamethods') end })")
        .eval()
        .expect("script runs");
    let (entry, value, quality) = property_fields(&lua, &props, "p").expect("reads");
    assert!(matches!(entry, Value::Table(_)));
    assert_eq!(value, Value::Integer(7));
    assert_eq!(
        quality.as_string().map(|s| s.to_string_lossy()),
        Some("BAD".into())
    );
    let (entry, value, _) = property_fields(&lua, &props, "q").expect("reads");
    assert_eq!((entry, value), (Value::Integer(5), Value::Nil));
    let (entry, _, _) = property_fields(&lua, &props, "missing").expect("raw: no __index");
    assert_eq!(entry, Value::Nil);
    assert_eq!(
        raw_field(&lua, &props, "q").expect("reads"),
        Value::Integer(5)
    );
}

/// The table walk through the C API: metamethods never run (a `__pairs`, `__index` or `__len`
/// that would raise is ignored), keys of every convertible type become names, `json.null`
/// is null, and unconvertible values and keys are errors naming their type; the 65th level of
/// nesting is refused as it is for JSON → Lua.
#[test]
fn tables_convert_raw_and_unconvertible_parts_are_named() {
    let lua = Lua::new();
    lua.globals()
        .set("null", Value::NULL)
        .expect("sets the global");
    let t: Value = lua
        .load(
            "local boom = function() error('a metamethod ran') end
             local t = setmetatable({ 1, 2, 3 }, { __pairs = boom, __index = boom, __len = boom })
             return { seq = t, [7] = 'int', [2.5] = 'float', [true] = 'bool', n = null,
                      nested = { a = { b = 'c' } }, empty = {} }",
        )
        .eval()
        .expect("script runs");
    let json = lua_to_json(&lua, &t, 1 << 20).expect("converts");
    assert_eq!(
        json,
        serde_json::json!({
            "seq": [1, 2, 3], "7": "int", "2.5": "float", "true": "bool", "n": null,
            "nested": {"a": {"b": "c"}}, "empty": {}
        })
    );
    for (script, named) in [
        ("return { f = print }", "a function cannot be converted"),
        ("return { [print] = 1 }", "a table with a function key"),
        (
            "return { { coroutine.create(print) } }",
            "a thread cannot be converted",
        ),
        ("return { x = 0/0 }", "cannot be represented in JSON"),
    ] {
        let v: Value = lua.load(script).eval().expect("script runs");
        let err = lua_to_json(&lua, &v, 1 << 20).unwrap_err();
        assert!(err.contains(named), "{script}: {err}");
    }
    let deep = |levels: usize| -> Value {
        lua.load(format!(
            "local t = 1 for _ = 1, {levels} do t = {{ t }} end return t"
        ))
        .eval()
        .expect("script runs")
    };
    lua_to_json(&lua, &deep(MAX_DEPTH), 1 << 20).expect("64 levels");
    let err = lua_to_json(&lua, &deep(MAX_DEPTH + 1), 1 << 20).unwrap_err();
    assert!(err.contains("nested deeper than 64"), "{err}");
    // A cycle is the same error, not a stack overflow.
    let cyclic: Value = lua
        .load("local t = {} t.self = t return t")
        .eval()
        .expect("script runs");
    let err = lua_to_json(&lua, &cyclic, 1 << 20).unwrap_err();
    assert!(err.contains("nested deeper than 64"), "{err}");
}
