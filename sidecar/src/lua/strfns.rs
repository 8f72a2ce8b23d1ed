//! `string.find`, `match`, `gmatch` and `gsub` (string replacements) on the bounded matcher of
//! [`super::pattern`], as Lua functions the sandbox prelude wraps.
//!
//! Pattern and argument errors come back as `false, message` and the prelude raises them at the
//! script's line, as plain Lua does (an error raised from Rust would reach scripts as userdata,
//! not the string they expect). Running past the call's deadline aborts the match and trips the
//! budget, like the hook does for Lua code. `gsub` with a function or table replacement is
//! written in Lua in the prelude over [`search`](install): the replacement is Lua code, which the
//! hook meters, and its errors keep their values.

use std::sync::{Arc, Mutex};

use mlua::{Lua, MultiValue, Table, Value};

use super::pattern::{self, Abort, Capture, Matcher};
use super::sandbox::Budget;

/// A failed call: the message a plain Lua would raise.
type Failure = String;

fn type_name(args: &MultiValue, i: usize) -> &'static str {
    args.get(i - 1).map_or("no value", Value::type_name)
}

/// Argument `i` (1-based) as a string; numbers are converted, as Lua does.
fn arg_str(lua: &Lua, args: &MultiValue, i: usize, f: &str) -> Result<mlua::String, Failure> {
    let v = args.get(i - 1).cloned().unwrap_or(Value::Nil);
    match v {
        Value::String(s) => Ok(s),
        Value::Integer(_) | Value::Number(_) => lua
            .coerce_string(v)
            .ok()
            .flatten()
            .ok_or_else(|| format!("bad argument #{i} to '{f}' (string expected, got number)")),
        _ => Err(format!(
            "bad argument #{i} to '{f}' (string expected, got {})",
            type_name(args, i)
        )),
    }
}

/// Optional integer argument `i`, `default` when absent or nil (`luaL_optinteger`).
fn opt_int(lua: &Lua, args: &MultiValue, i: usize, f: &str, default: i64) -> Result<i64, Failure> {
    let v = args.get(i - 1).cloned().unwrap_or(Value::Nil);
    let number = match v {
        Value::Nil => return Ok(default),
        Value::Integer(n) => return Ok(n),
        Value::Number(n) => Some(n),
        Value::String(_) => lua.coerce_number(v).ok().flatten(),
        _ => None,
    };
    match number {
        Some(n) if n.fract() == 0.0 && n >= -(2f64.powi(63)) && n < 2f64.powi(63) => Ok(n as i64),
        Some(_) => Err(format!(
            "bad argument #{i} to '{f}' (number has no integer representation)"
        )),
        None => Err(format!(
            "bad argument #{i} to '{f}' (number expected, got {})",
            type_name(args, i)
        )),
    }
}

/// Lua's `posrelatI`: a 1-based start position, negative from the end, clamped at 1.
fn start_position(pos: i64, len: usize) -> usize {
    let len = len as i64;
    let p = if pos > 0 {
        pos
    } else if pos == 0 || pos < -len {
        1
    } else {
        len + pos + 1
    };
    usize::try_from(p).unwrap_or(usize::MAX)
}

/// The values of `caps` (strings of `src`, or integers).
fn capture_values(lua: &Lua, src: &[u8], caps: &[Capture]) -> mlua::Result<Vec<Value>> {
    caps.iter()
        .map(|c| match *c {
            Capture::Text(s, e) => lua.create_string(&src[s..e]).map(Value::String),
            Capture::Position(p) => Ok(Value::Integer(p as i64)),
        })
        .collect()
}

/// Turns the outcome of a call into what the prelude expects: the results, or `false, message`
/// for a Lua error; a deadline stop is an mlua error that has tripped the budget.
fn finish(lua: &Lua, budget: &Budget, r: Result<Vec<Value>, Abort>) -> mlua::Result<MultiValue> {
    match r {
        Ok(values) => Ok(values.into_iter().collect()),
        Err(Abort::Pattern(msg)) => Ok(MultiValue::from_iter([
            Value::Boolean(false),
            Value::String(lua.create_string(msg)?),
        ])),
        Err(Abort::Stopped) => Err(budget.trip_deadline()),
    }
}

fn failed(msg: Failure) -> Abort {
    Abort::Pattern(msg)
}

/// `string.find` (`find`) and `string.match` (not `find`).
fn find_or_match(
    lua: &Lua,
    budget: &Budget,
    args: &MultiValue,
    find: bool,
) -> Result<Vec<Value>, Abort> {
    let f = if find { "find" } else { "match" };
    let s = arg_str(lua, args, 1, f).map_err(failed)?;
    let p = arg_str(lua, args, 2, f).map_err(failed)?;
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let init = start_position(opt_int(lua, args, 3, f, 1).map_err(failed)?, src.len()) - 1;
    if init > src.len() {
        return Ok(vec![Value::Nil]);
    }
    let plain = find
        && args
            .get(3)
            .is_some_and(|v| !matches!(v, Value::Nil | Value::Boolean(false)));
    let mut stop = || budget.past_deadline();
    if find && (plain || !pattern::has_specials(&pat)) {
        return Ok(match plain_find(&src, &pat, init, &mut stop)? {
            Some(i) => vec![
                Value::Integer(i as i64 + 1),
                Value::Integer((i + pat.len()) as i64),
            ],
            None => vec![Value::Nil],
        });
    }
    let Some((start, end, m)) = pattern::search(&src, &pat, init, None, true, &mut stop)? else {
        return Ok(vec![Value::Nil]);
    };
    let lua_err = |e: mlua::Error| Abort::Pattern(e.to_string());
    if find {
        let caps = m.captures(start, end, false)?;
        let mut out = vec![Value::Integer(start as i64 + 1), Value::Integer(end as i64)];
        out.extend(capture_values(lua, &src, &caps).map_err(lua_err)?);
        Ok(out)
    } else {
        let caps = m.captures(start, end, true)?;
        capture_values(lua, &src, &caps).map_err(lua_err)
    }
}

/// The first occurrence of `pat` in `src` at or after `init`. Costs up to subject × pattern
/// length byte comparisons, as Lua's own; `stop` is asked every 2^20 of them.
fn plain_find(
    src: &[u8],
    pat: &[u8],
    init: usize,
    stop: &mut dyn FnMut() -> bool,
) -> Result<Option<usize>, Abort> {
    if pat.is_empty() {
        return Ok(Some(init));
    }
    let Some(last) = src.len().checked_sub(pat.len()) else {
        return Ok(None);
    };
    let mut work = 0usize;
    for i in init..=last {
        work += pat.len();
        if work >= 1 << 20 {
            work = 0;
            if stop() {
                return Err(Abort::Stopped);
            }
        }
        if src[i] == pat[0] && &src[i..i + pat.len()] == pat {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// `string.gsub` with a string (or number) replacement.
fn gsub_string(lua: &Lua, budget: &Budget, args: &MultiValue) -> Result<Vec<Value>, Abort> {
    let s = arg_str(lua, args, 1, "gsub").map_err(failed)?;
    let p = arg_str(lua, args, 2, "gsub").map_err(failed)?;
    let repl = arg_str(lua, args, 3, "gsub").map_err(failed)?;
    let (src, pat, repl) = (s.as_bytes(), p.as_bytes(), repl.as_bytes());
    let max = opt_int(lua, args, 4, "gsub", src.len() as i64 + 1).map_err(failed)?;
    let mut out = Vec::with_capacity(src.len());
    let (mut pos, mut last, mut n) = (0usize, None, 0i64);
    let anchored = pat.first() == Some(&b'^');
    let mut stop = || budget.past_deadline();
    while n < max {
        let Some((start, end, m)) = pattern::search(&src, &pat, pos, last, true, &mut stop)? else {
            break;
        };
        out.extend_from_slice(&src[pos..start]);
        n += 1;
        append_replacement(&mut out, &repl, &src, start, end, &m)?;
        pos = end;
        last = Some(end);
        if anchored {
            break;
        }
    }
    out.extend_from_slice(&src[pos..]);
    let out = lua
        .create_string(&out)
        .map_err(|e| Abort::Pattern(e.to_string()))?;
    Ok(vec![Value::String(out), Value::Integer(n)])
}

/// Lua's `add_s`: `%0`..`%9` are the match and its captures, `%%` is `%`.
fn append_replacement(
    out: &mut Vec<u8>,
    repl: &[u8],
    src: &[u8],
    start: usize,
    end: usize,
    m: &Matcher<'_>,
) -> Result<(), Abort> {
    let mut i = 0;
    while i < repl.len() {
        let c = repl[i];
        i += 1;
        if c != b'%' {
            out.push(c);
            continue;
        }
        match repl.get(i) {
            Some(b'%') => out.push(b'%'),
            Some(b'0') => out.extend_from_slice(&src[start..end]),
            Some(d) if d.is_ascii_digit() => match m.capture(usize::from(d - b'1'), start, end)? {
                Capture::Text(s, e) => out.extend_from_slice(&src[s..e]),
                Capture::Position(p) => out.extend_from_slice(p.to_string().as_bytes()),
            },
            _ => {
                return Err(Abort::Pattern(
                    "invalid use of '%' in replacement string".into(),
                ))
            }
        }
        i += 1;
    }
    Ok(())
}

/// `search(s, p, init, last)`, the step of the prelude's `gsub` with a function or table: the
/// first match at or after `init` (1-based) not ending at `last` (exclusive end, 1-based), as
/// `start, end, captures...` (the whole match when the pattern has none), or nil.
fn search_step(lua: &Lua, budget: &Budget, args: &MultiValue) -> Result<Vec<Value>, Abort> {
    let s = arg_str(lua, args, 1, "gsub").map_err(failed)?;
    let p = arg_str(lua, args, 2, "gsub").map_err(failed)?;
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let init = opt_int(lua, args, 3, "gsub", 1).map_err(failed)?.max(1) as usize - 1;
    let last = match opt_int(lua, args, 4, "gsub", 0).map_err(failed)? {
        0 => None,
        l => Some(l as usize - 1),
    };
    let mut stop = || budget.past_deadline();
    let Some((start, end, m)) = pattern::search(&src, &pat, init, last, true, &mut stop)? else {
        return Ok(vec![Value::Nil]);
    };
    let caps = m.captures(start, end, true)?;
    let mut out = vec![
        Value::Integer(start as i64 + 1),
        Value::Integer(end as i64 + 1),
    ];
    out.extend(capture_values(lua, &src, &caps).map_err(|e| Abort::Pattern(e.to_string()))?);
    Ok(out)
}

/// `string.gmatch(s, p [, init])`: an iterator over the matches (`^` is literal here).
fn gmatch(lua: &Lua, budget: &Arc<Budget>, args: &MultiValue) -> mlua::Result<MultiValue> {
    let parsed = (|| {
        let s = arg_str(lua, args, 1, "gmatch")?;
        let p = arg_str(lua, args, 2, "gmatch")?;
        let len = s.as_bytes().len();
        let init = start_position(opt_int(lua, args, 3, "gmatch", 1)?, len) - 1;
        Ok::<_, Failure>((
            s.as_bytes().to_vec(),
            p.as_bytes().to_vec(),
            init.min(len + 1),
        ))
    })();
    let (src, pat, init) = match parsed {
        Ok(v) => v,
        Err(msg) => return finish(lua, budget, Err(Abort::Pattern(msg))),
    };
    let state = Mutex::new((init, None::<usize>));
    let budget = Arc::clone(budget);
    let next = lua.create_function(move |lua, ()| {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let (pos, last) = *st;
        let r = (|| {
            if pos > src.len() {
                return Ok(vec![]);
            }
            let mut stop = || budget.past_deadline();
            let Some((start, end, m)) = pattern::search(&src, &pat, pos, last, false, &mut stop)?
            else {
                *st = (src.len() + 1, last);
                return Ok(vec![]);
            };
            *st = (end, Some(end));
            let caps = m.captures(start, end, true)?;
            capture_values(lua, &src, &caps).map_err(|e| Abort::Pattern(e.to_string()))
        })();
        finish(lua, &budget, r)
    })?;
    Ok(MultiValue::from_iter([Value::Function(next)]))
}

/// The table the prelude receives: `find`, `match`, `gmatch`, `gsub` (string replacements) and
/// `search` (for `gsub` with a function or table).
pub(crate) fn install(lua: &Lua, budget: &Arc<Budget>) -> mlua::Result<Table> {
    type Op = fn(&Lua, &Budget, &MultiValue) -> Result<Vec<Value>, Abort>;
    let ops: [(&str, Op); 4] = [
        ("find", |lua, b, args| find_or_match(lua, b, args, true)),
        ("match", |lua, b, args| find_or_match(lua, b, args, false)),
        ("gsub", gsub_string),
        ("search", search_step),
    ];
    let t = lua.create_table()?;
    for (name, op) in ops {
        let b = Arc::clone(budget);
        let f = lua.create_function(move |lua, args: MultiValue| {
            let r = op(lua, &b, &args);
            finish(lua, &b, r)
        })?;
        t.raw_set(name, f)?;
    }
    let b = Arc::clone(budget);
    t.raw_set(
        "gmatch",
        lua.create_function(move |lua, args: MultiValue| gmatch(lua, &b, &args))?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests;
