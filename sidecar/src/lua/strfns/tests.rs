//! Differential tests: the sandbox's pattern functions against Lua 5.4's own, on the same
//! expressions, compared by value (errors by message and position).

use std::time::Duration;

use mlua::Lua;

use crate::lua::vm::new_vm;
use crate::lua::LuaLimits;

/// Serialises the results of `pcall(function() return EXPR end)`, the same way in both VMs.
const HARNESS: &str = r#"
local function show(v)
    if type(v) == "string" then
        return string.format("%q", v)
    end
    return type(v) .. ":" .. tostring(v)
end
return function(f)
    local r = table.pack(pcall(f))
    local out = {}
    for i = 1, r.n do out[#out + 1] = show(r[i]) end
    return table.concat(out, ", ")
end
"#;

const CASES: &[&str] = &[
    // find: plain, specials, init
    r#"string.find("hello world", "o w")"#,
    r#"string.find("hello world", "o", 6)"#,
    r#"string.find("hello world", "o", -3)"#,
    r#"string.find("hello world", "l", 0)"#,
    r#"string.find("hello", "", 10)"#,
    r#"string.find("hello", "", 6)"#,
    r#"string.find("hello", "", 7)"#,
    r#"string.find("a.b", ".", 1, true)"#,
    r#"string.find("a+b", "+", 1, true)"#,
    r#"string.find("abc", "b", "2")"#,
    r#"string.find(12345, 3)"#,
    r#"string.find("hello", "l+")"#,
    r#"string.find("hello", "(l+)(o)")"#,
    r#"string.find("hello", "()ll()")"#,
    r#"string.find("  x", "^%s*")"#,
    r#"string.find("abc", "^b")"#,
    r#"string.find("abc", "c$")"#,
    r#"string.find("a$c", "$c")"#,
    r#"string.find("THE (quick) fox", "%((%a+)%)")"#,
    r#"string.find("f(a(b)c)d", "%b()")"#,
    r#"string.find("THE (quick) fox", "%f[%a]%a+", 5)"#,
    r#"string.find("key = value", "(%w+)%s*=%s*(%w+)")"#,
    r#"string.find("x=1, y=22", "(%a)=(%d+)", 4)"#,
    r#"string.find("abcabc", "(abc)%1")"#,
    r#"string.find("a\0b", "%z")"#,
    r#"string.find("a\0b", "\0")"#,
    r#"string.find("tab\there", "%c")"#,
    r#"string.find("x-y", "[%w-]+")"#,
    r#"string.find("]]", "[]]+")"#,
    r#"string.find("a^b", "[b^]")"#,
    r#"string.find("abc123", "[^%a]+")"#,
    r#"string.find("Hello", "[A-Z][a-z]*")"#,
    r#"string.find("aaa", "a-b")"#,
    r#"string.find("aaab", "a-b")"#,
    r#"string.find("color colour", "colou?r", 2)"#,
    r#"string.find("\v\f x", "%s+")"#,
    r#"string.find("1F", "%x%X")"#,
    r#"string.find("a,b", "%p")"#,
    r#"string.find("ab", "%g+")"#,
    // match
    r#"string.match("2024-01-05", "(%d+)-(%d+)-(%d+)")"#,
    r#"string.match("hello", ".-")"#,
    r#"string.match("hello", "l*", 3)"#,
    r#"string.match("  trim  ", "^%s*(.-)%s*$")"#,
    r#"string.match("abc", "()b()")"#,
    r#"string.match("abc", "x")"#,
    r#"string.match("abc", "b", 10)"#,
    r#"string.match("abc", "^(a)(b)(c)$")"#,
    // gsub: strings, %n, tables, functions, limits, empty matches
    r#"string.gsub("hello world", "o", "0")"#,
    r#"string.gsub("hello world", "(o)", "[%1]")"#,
    r#"string.gsub("hello world", "%w+", "<%0>")"#,
    r#"string.gsub("hello", "l", "%%")"#,
    r#"string.gsub("hello", "", "-")"#,
    r#"string.gsub("abc", "%w*", "-")"#,
    r#"string.gsub("abc", "b*", "-")"#,
    r#"string.gsub("", "", "x")"#,
    r#"string.gsub("aaa", "a", "b", 2)"#,
    r#"string.gsub("aaa", "a", "b", 0)"#,
    r#"string.gsub("aaa", "^a", "b")"#,
    r#"string.gsub("hello", "()", "%1")"#,
    r#"string.gsub("abc", "b", 4)"#,
    r#"string.gsub("$x $y", "%$(%w+)", {x = "1", y = 2})"#,
    r#"string.gsub("$x $y", "%$(%w+)", {x = false})"#,
    r#"string.gsub("a b", "%w", function(c) return c:upper() end)"#,
    r#"string.gsub("a b", "(%w)", function(c) return nil end)"#,
    r#"string.gsub("a=1 b=2", "(%w)=(%w)", function(k, v) return v .. k end)"#,
    r#"string.gsub("abc", "", function() return "." end)"#,
    r#"string.gsub("abc", "%w", function() return {} end)"#,
    r#"string.gsub("abc", "%w", {a = {}})"#,
    r#"string.gsub("abc", "%w", "%2")"#,
    r#"string.gsub("abc", "%w", "%x")"#,
    r#"string.gsub("abc", "(%w)", "%2")"#,
    r#"string.gsub("abc", "b", true)"#,
    r#"string.gsub("abc", "b")"#,
    r#"string.gsub("abc", "b", "x", 1.5)"#,
    r#"string.gsub("abc", "b", {}, "z")"#,
    r#"string.gsub("abc", "b", function() error("boom") end)"#,
    // gmatch
    r#"(function() local t = {} for w in string.gmatch("one two  three", "%a+") do t[#t+1] = w end return table.concat(t, "|") end)()"#,
    r#"(function() local t = {} for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do t[#t+1] = k .. v end return table.concat(t, "|") end)()"#,
    r#"(function() local t = {} for w in string.gmatch("abc", "") do t[#t+1] = "." end return #t end)()"#,
    r#"(function() local t = {} for w in string.gmatch("^a^a", "^a") do t[#t+1] = w end return #t end)()"#,
    r#"(function() local t = {} for p in string.gmatch("abc", "()") do t[#t+1] = p end return table.concat(t, ",") end)()"#,
    r#"(function() local t = {} for w in string.gmatch("abcd", "%a", 3) do t[#t+1] = w end return table.concat(t) end)()"#,
    r#"(function() local t = {} for w in string.gmatch("abc", "%w*") do t[#t+1] = "[" .. w .. "]" end return table.concat(t) end)()"#,
    r#"string.gmatch("abc", "(")()"#,
    r#"string.gmatch(nil, "a")"#,
    // method calls go through the same functions
    r#"("x=1"):match("(%w)=(%d)")"#,
    r#"("abc"):gsub("b", "B")"#,
    // errors
    r#"string.find("a", "%")"#,
    r#"string.find("a", "[a")"#,
    r#"string.find("a", "[]")"#,
    r#"string.find("a", "%f")"#,
    r#"string.find("a", "%fa")"#,
    r#"string.find("a", "%1")"#,
    r#"string.find("a", "%0")"#,
    r#"string.find("a", "(a")"#,
    r#"string.find("a", "a)")"#,
    r#"string.find("a", "%b")"#,
    r#"string.find("a", "%ba")"#,
    r#"string.find("aa", "(()%1)")"#,
    r#"string.find(string.rep("a", 40), string.rep("(a)", 33))"#,
    r#"string.find(string.rep("a", 300), string.rep("a?", 300) .. string.rep("a", 300))"#,
    r#"string.match("a", "()", 1, 2)"#,
    r#"string.find()"#,
    r#"string.find("a")"#,
    r#"string.find("a", {})"#,
    r#"string.find("a", "a", 1.5)"#,
    r#"string.find("a", "a", {})"#,
    r#"string.match(true, "a")"#,
];

fn run(lua: &Lua, expr: &str) -> String {
    let harness: mlua::Function = lua.load(HARNESS).eval().expect("harness");
    let f: mlua::Function = lua
        // Not a tail call: the error position is the expression's line in both VMs.
        .load(format!(
            "return function() local r = table.pack({expr}) return table.unpack(r, 1, r.n) end"
        ))
        .eval()
        .unwrap_or_else(|e| panic!("{expr}: {e}"));
    harness.call(f).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

#[test]
fn the_sandbox_matches_like_lua_itself() {
    let oracle = Lua::new();
    let limits = LuaLimits {
        deadline: Duration::from_secs(60),
        ..LuaLimits::default()
    };
    let (sandboxed, _budget, _caller) = new_vm("t", limits).expect("vm");
    let mut differ = Vec::new();
    for expr in CASES {
        let (want, got) = (run(&oracle, expr), run(&sandboxed, expr));
        if want != got {
            differ.push(format!("{expr}\n  lua:     {want}\n  sandbox: {got}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// Not a test: the cost of the sandbox's pattern functions against Lua's own on typical
/// script work, printed as a ratio (run with `--ignored --nocapture`, in release).
#[test]
#[ignore]
fn pattern_cost_against_lua_itself() {
    const WORK: &str = r#"
local line = "temperature=21.5;pressure=1013;status=OK;ts=2026-12-06T15:41:58Z"
local n = 0
for i = 1, 20000 do
    for k, v in line:gmatch("(%w+)=([^;]+)") do n = n + #k + #v end
    local y, m, d = line:match("ts=(%d+)-(%d+)-(%d+)")
    n = n + #y + (line:find("status=OK", 1, true) or 0)
    n = n + #(line:gsub("%s+", ""))
end
return n
"#;
    let time = |lua: &Lua| {
        let t = std::time::Instant::now();
        let n: i64 = lua.load(WORK).eval().expect("work");
        (t.elapsed(), n)
    };
    let limits = LuaLimits {
        deadline: Duration::from_secs(600),
        instructions: u64::MAX,
        ..LuaLimits::default()
    };
    let (sandboxed, _budget, _caller) = new_vm("t", limits).expect("vm");
    let oracle = Lua::new();
    let _ = (time(&oracle), time(&sandboxed));
    let (lua_t, lua_n) = time(&oracle);
    let (ours_t, ours_n) = time(&sandboxed);
    assert_eq!(lua_n, ours_n);
    println!(
        "Lua 5.4 C matcher {lua_t:?}, sandbox {ours_t:?}: ratio {:.2}",
        ours_t.as_secs_f64() / lua_t.as_secs_f64()
    );
}
