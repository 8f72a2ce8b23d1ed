//! The Lua dialect a template is written in. The LSR embeds Lua 5.1; Edgeway runs Lua 5.4, whose
//! sandbox guarantees are built and tested on it (docs/lua.md, "Dialects"). A template in the
//! `lsr` dialect (the default) is read as Lua 5.1 reads it where the two differ in what can be
//! fixed before or around the VM:
//!
//! - **String escapes** ([`lua51_escapes`]): Lua 5.1 drops the backslash of an escape it does
//!   not know (`"\."` is `"."`, common in patterns written for the LSR), where 5.4 refuses the
//!   whole file; and `\x`, `\z`, `\u{}`, escapes 5.4 added, are plain letters in 5.1.
//! - **Library** ([`LSR_PRELUDE`]): the 5.1 names `unpack`, `table.getn`, `table.maxn`,
//!   `string.gfind`, `math.mod`, `math.pow`, `math.log10`, `math.ldexp`, and the LSR's data
//!   shapes and InfoTables, defined over the sandboxed 5.4 functions, so their limits hold.
//!
//!   `tostring` and `string.format` treat floats as 5.1 does (`tostring(10/2)` is `5`; `%d`
//!   of 3.7 is `3`).
//!
//! Not reachable this way, and documented: `..` converts a float inside the VM, so
//! `"v=" .. 10/2` is `v=5.0` where 5.1 writes `v=5`; `setfenv`/`getfenv` do not exist.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use mlua::{Lua, Value};
use serde_json::Value as Json;

use super::convert::{json_to_lua, lua_to_json};
use super::lexer::{Lexer, Token};
use super::sandbox::caller_location;
use super::{LuaLimits, ThingSpec};

/// Which Lua a template is written for.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Dialect {
    /// The LSR's Lua 5.1: unknown string escapes keep their character, 5.1 library names exist.
    #[default]
    Lsr,
    /// Plain Lua 5.4, as the VM runs it.
    Lua54,
}

/// The `lsr` dialect's library (`lsr.lua`): the Lua 5.1 names 5.4 dropped, and the LSR's data
/// shapes and InfoTables (`dataShapes`, `DataShape`, `tw_datashape`, `tw_infotable`,
/// `tw_mutex`), over the sandboxed functions.
const LSR_PRELUDE: &str = include_str!("lsr.lua");

/// Escapes Lua 5.1 knows after a backslash: the rest lose their backslash there.
fn lua51_escape(c: u8) -> bool {
    matches!(
        c,
        b'a' | b'b' | b'f' | b'n' | b'r' | b't' | b'v' | b'\\' | b'"' | b'\'' | b'\n' | b'\r'
    ) || c.is_ascii_digit()
}

/// `src` with every escape of a quoted string that Lua 5.1 does not know replaced by its
/// character, as 5.1 reads it; borrowed when there is none. Long strings and comments are left
/// alone, and no line moves, so errors keep their line numbers.
pub(crate) fn lua51_escapes(src: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for token in Lexer::new(src) {
        let Token::Quoted(range) = token else {
            continue;
        };
        let mut i = range.start + 1;
        while i < range.end {
            if src[i] != b'\\' {
                i += 1;
                continue;
            }
            match src.get(i + 1) {
                Some(&c) if i + 1 < range.end && !lua51_escape(c) => {
                    let buf = out.get_or_insert_with(|| Vec::with_capacity(src.len()));
                    buf.extend_from_slice(&src[copied..i]);
                    copied = i + 1; // drop the backslash, keep the character
                    i += 2;
                }
                _ => i += 2,
            }
        }
    }
    match out {
        None => Cow::Borrowed(src),
        Some(mut buf) => {
            buf.extend_from_slice(&src[copied..]);
            Cow::Owned(buf)
        }
    }
}

/// The `lsr` dialect's library and the thing's `p_data`, as the LSR framework fills it
/// (docs/research/lsr-framework.md): the name, and the scan and task rates (one rate here:
/// the thing's scan rate runs its tasks), with the framework's other defaults.
pub(crate) fn install_lsr(lua: &Lua, spec: &ThingSpec, limits: &LuaLimits) -> mlua::Result<()> {
    // Wall-clock milliseconds for per-property `scanRate`s (os.time counts whole seconds); the
    // library keeps it as a local and removes the global.
    let now = lua.create_function(|_, ()| Ok(super::now_ms()))?;
    lua.globals().raw_set("__lsr_now_ms", now)?;
    lua.load(LSR_PRELUDE).set_name("=lsr library").exec()?;
    // `json.encode`/`json.decode`, bounded like results: the text either way is at most
    // `maxResultBytes`, so a C call cannot run long on one giant document.
    let max = limits.max_result_bytes;
    let json = lua.create_table()?;
    let encode = lua.create_function(move |lua, v: Value| {
        lua_to_json(lua, &v, max)
            .map(|j| j.to_string())
            .map_err(|e| mlua::Error::runtime(format!("{} json.encode: {e}", caller_location(lua))))
    })?;
    let decode = lua.create_function(move |lua, text: mlua::String| {
        let bytes = text.as_bytes();
        let fail =
            |e: String| mlua::Error::runtime(format!("{} json.decode: {e}", caller_location(lua)));
        if bytes.len() > max {
            return Err(fail(format!(
                "{} bytes is over maxResultBytes ({max})",
                bytes.len()
            )));
        }
        let j: Json = serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
        json_to_lua(lua, &j)
    })?;
    json.raw_set("encode", encode)?;
    json.raw_set("decode", decode)?;
    lua.globals().raw_set("json", json)?;
    let rate = i64::try_from(spec.scan_rate.as_millis()).unwrap_or(i64::MAX);
    let p = lua.create_table()?;
    p.raw_set("name", spec.name.as_str())?;
    p.raw_set("scanRate", rate)?;
    p.raw_set("taskRate", rate)?;
    p.raw_set("scanRateResolution", 500)?;
    p.raw_set("keepAliveRate", 60_000)?;
    p.raw_set("requestTimeout", 15_000)?;
    p.raw_set("defaultPushType", "VALUE")?;
    p.raw_set("useShapes", true)?;
    lua.globals().raw_set("p_data", p)
}

#[cfg(test)]
mod tests;
