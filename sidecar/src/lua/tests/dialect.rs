//! Templates in the LSR's Lua 5.1 dialect: escapes 5.4 refuses and 5.1 library names work, and
//! the same script in the `lua54` dialect fails at load with its line.

use super::*;

const LSR_STYLE: &str = r#"
local pattern = "temp=(%d+\.%d+)"
services.Parse = function(me, headers, query, data)
    local first = string.match(data.line, pattern)
    local words = {}
    for w in string.gfind(data.line, "%a+") do words[#words + 1] = w end
    local a, b = unpack({ 7, 8 })
    return 200, {
        temp = tonumber(first),
        words = table.getn(words),
        sum = a + b,
        mod = math.mod(7, 3),
        pow = math.pow(2, 10),
        log10 = math.log10(1000),
        maxn = table.maxn({ [1] = 1, [5] = 5 }),
        same = string.gfind == string.gmatch,
        x = "\x41",
    }
end
"#;

fn load_as(file: &str, source: &str, dialect: Dialect) -> Result<Things, LuaError> {
    let path = write_template(file, source.as_bytes());
    Things::load(
        &[TemplateSource {
            name: "t".into(),
            path,
            dialect,
        }],
        &[spec("T1", "t")],
        LuaLimits::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_lsr_template_reads_as_lua51() {
    let things = load_as("lsr.lua", LSR_STYLE, Dialect::Lsr).expect("loads as Lua 5.1 would");
    let r = call(&things, "Parse", json!({"line": "temp=21.5 ok now"}))
        .await
        .unwrap();
    assert_eq!(
        r.value,
        json!({"temp": 21.5, "words": 3, "sum": 15, "mod": 1, "pow": 1024.0,
               "log10": 3.0, "maxn": 5, "same": true, "x": "x41"})
    );
}

#[test]
fn the_same_script_in_lua54_fails_at_load_with_its_line() {
    let e = load_as("plain.lua", LSR_STYLE, Dialect::Lua54)
        .unwrap_err()
        .to_string();
    assert!(e.contains("plain.lua:2:") && e.contains("escape"), "{e}");
}

#[test]
fn lua51_names_are_absent_in_lua54() {
    let things = load_as(
        "names.lua",
        "assert(unpack == nil and table.getn == nil and string.gfind == nil and math.mod == nil)\n",
        Dialect::Lua54,
    );
    assert!(things.is_ok(), "{:?}", things.err());
}
