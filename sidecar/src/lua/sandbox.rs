//! The Lua sandbox: a VM with only safe libraries, an instruction/deadline budget enforced by a
//! hook, a memory limit, and mapping of mlua errors to [`ThingError`]s.

use super::{LuaLimits, ThingError};
use mlua::{ChunkMode, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, Variadic, VmState};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Memory in use above which a VM's calls run off the worker: C loops that are linear in
/// their inputs (`upper`, `utf8.len`, `concat`...) stay within a few milliseconds below it.
pub(crate) const INLINE_MEMORY: usize = 4 << 20;

/// Instructions between hook calls: fine enough to stop runaways promptly, coarse enough to be
/// cheap. The instruction budget is therefore enforced to within this many instructions.
const HOOK_STEP: u32 = 1000;

/// Which limit aborted the current call, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trip {
    None,
    Instructions,
    Deadline,
}

/// Execution budget of one VM, re-armed before every call. Atomics because the hook must be
/// `Send` (mlua `send` feature); only the thread holding the VM touches it.
pub(crate) struct Budget {
    limits: LuaLimits,
    base: Instant,
    used: AtomicU64,
    /// Nanoseconds after `base`; 0 (already past) until first armed, so Lua code that runs
    /// outside a call (e.g. finalizers while the VM is dropped) is stopped too.
    deadline_ns: AtomicU64,
    /// Nanoseconds after `base` when a call running on an async worker must yield so the rest
    /// runs off the worker (see `offload`); `u64::MAX` while not on a worker.
    slice_end_ns: AtomicU64,
    /// The call thread (`offload::Caller`), as a pointer: the only thread the hook may yield.
    outer: AtomicUsize,
    tripped: AtomicU8,
}

impl Budget {
    fn new(limits: LuaLimits) -> Arc<Budget> {
        Arc::new(Budget {
            limits,
            base: Instant::now(),
            used: AtomicU64::new(0),
            deadline_ns: AtomicU64::new(0),
            slice_end_ns: AtomicU64::new(u64::MAX),
            outer: AtomicUsize::new(0),
            tripped: AtomicU8::new(0),
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Starts a slice of `len` for Lua running on an async worker, ending at the first hook
    /// call after it.
    pub(crate) fn start_slice(&self, len: Duration) {
        let end = self
            .now_ns()
            .saturating_add(u64::try_from(len.as_nanos()).unwrap_or(0));
        self.slice_end_ns.store(end, Ordering::Relaxed);
    }

    /// Ends the slice (the VM is no longer on a worker); returns its end for `restore_slice`.
    pub(crate) fn end_slice(&self) -> u64 {
        self.slice_end_ns.swap(u64::MAX, Ordering::Relaxed)
    }

    /// Puts back a slice ended by `end_slice`: the VM is on a worker again.
    pub(crate) fn restore_slice(&self, end: u64) {
        self.slice_end_ns.store(end, Ordering::Relaxed);
    }

    /// Sets the thread the hook may yield when the slice is over.
    pub(crate) fn set_outer(&self, thread: *const std::ffi::c_void) {
        self.outer.store(thread as usize, Ordering::Relaxed);
    }

    /// Whether Lua is running (or about to run) on an async worker.
    pub(crate) fn on_worker(&self) -> bool {
        self.slice_end_ns.load(Ordering::Relaxed) != u64::MAX
    }

    /// Grants a fresh budget for the next call. The budget is deliberately left to run out
    /// afterwards rather than disarmed (see `deadline_ns`).
    pub(crate) fn arm(&self) {
        let deadline = self.base.elapsed().saturating_add(self.limits.deadline);
        let ns = u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX);
        self.used.store(0, Ordering::Relaxed);
        self.tripped.store(0, Ordering::Relaxed);
        self.deadline_ns.store(ns, Ordering::Relaxed);
    }

    /// Whether the armed call's deadline has passed (C code the hook cannot interrupt may
    /// finish after it, as a backtracking pattern does).
    pub(crate) fn past_deadline(&self) -> bool {
        self.now_ns() > self.deadline_ns.load(Ordering::Relaxed)
    }

    /// Trips the deadline (a Rust loop found it passed, e.g. the pattern matcher) and returns
    /// the error the hook raises for it.
    pub(crate) fn trip_deadline(&self) -> mlua::Error {
        if self.trip() == Trip::None {
            self.tripped.store(2, Ordering::Relaxed);
        }
        match self.check() {
            Err(e) => e,
            Ok(_) => mlua::Error::runtime("deadline exceeded"),
        }
    }

    /// The limit that aborted the call since the last `arm`.
    pub(crate) fn trip(&self) -> Trip {
        match self.tripped.load(Ordering::Relaxed) {
            1 => Trip::Instructions,
            2 => Trip::Deadline,
            _ => Trip::None,
        }
    }

    /// Hook body: counts instructions and checks the clock. Once tripped it keeps failing, so
    /// a script that catches the error cannot continue for long. Past the worker slice (or
    /// with more than `INLINE_MEMORY` in use, which C loops could go through) it asks
    /// the call thread (never a script's coroutine, whose results a yield would change) to
    /// yield, which mlua does only where Lua allows one (elsewhere the call goes on).
    fn tick(&self, lua: &Lua) -> mlua::Result<VmState> {
        let used =
            self.used.fetch_add(u64::from(HOOK_STEP), Ordering::Relaxed) + u64::from(HOOK_STEP);
        if self.trip() == Trip::None {
            let now = self.now_ns();
            if used > self.limits.instructions {
                self.tripped.store(1, Ordering::Relaxed);
            } else if now > self.deadline_ns.load(Ordering::Relaxed) {
                self.tripped.store(2, Ordering::Relaxed);
            } else if self.on_worker()
                && (now > self.slice_end_ns.load(Ordering::Relaxed)
                    || lua.used_memory() > INLINE_MEMORY)
                && lua.current_thread().to_pointer() as usize == self.outer.load(Ordering::Relaxed)
            {
                return Ok(VmState::Yield);
            }
        }
        self.check()
    }

    /// Charges a loop that runs in C (no hook calls inside) to the instruction budget, one
    /// instruction per iteration, before it starts.
    fn charge(&self, iterations: u64) -> mlua::Result<()> {
        let used = self
            .used
            .fetch_add(iterations, Ordering::Relaxed)
            .saturating_add(iterations);
        if used > self.limits.instructions && self.trip() == Trip::None {
            self.tripped.store(1, Ordering::Relaxed);
        }
        self.check().map(|_| ())
    }

    /// Fails if the call was aborted; also used by the `pcall` wrappers to re-raise.
    fn check(&self) -> mlua::Result<VmState> {
        match self.trip() {
            Trip::None => Ok(VmState::Continue),
            Trip::Instructions => Err(mlua::Error::runtime("instruction limit exceeded")),
            Trip::Deadline => Err(mlua::Error::runtime("deadline exceeded")),
        }
    }
}

/// Wraps every Lua construct that can catch errors so an aborted call cannot be swallowed:
/// after the protected call returns, the guard re-raises if the budget tripped. Also routes
/// `string.rep` through a size check (see `rep_size_check`), charges the C loops of
/// `string.rep` on empty strings and of `table.move` (which can run for days, with no hook
/// call and no memory use) to the instruction budget, and refuses `__gc` metamethods.
///
/// A call that starts on an async worker (`flags.inline`, see `offload`) must leave it before
/// work the budget hook cannot slice: library functions that may run long in C (pattern
/// matching, sorting, big strings) or call back into Lua from C (comparators, metamethods,
/// message handlers, coroutines). `offload` yields the call's own thread to Rust, which runs
/// the rest off the worker. Scripts cannot yield that thread themselves.
const GUARD_PRELUDE: &str = include_str!("sandbox.lua");

/// Globals of the base library a script must not reach: code loading and file access.
const REMOVED_GLOBALS: &[&str] = &[
    "load",
    "loadstring",
    "dofile",
    "loadfile",
    "require",
    "package",
    "debug",
    "io",
    "warn",
];

/// Opens a VM for `thing` with only the safe libraries and the budget hook installed; the
/// guards come with [`install_guards`] once the call thread exists (`vm::new_vm`).
pub(crate) fn open(thing: &str, limits: LuaLimits) -> mlua::Result<(Lua, Arc<Budget>)> {
    // OS is opened only to borrow time/clock/date; the table itself is replaced below.
    let libs = StdLib::COROUTINE
        | StdLib::TABLE
        | StdLib::STRING
        | StdLib::UTF8
        | StdLib::MATH
        | StdLib::OS;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    let budget = Budget::new(limits);
    let globals = lua.globals();

    let full_os: mlua::Table = globals.raw_get("os")?;
    let os = lua.create_table()?;
    for name in ["time", "clock", "date"] {
        os.raw_set(name, full_os.raw_get::<Value>(name)?)?;
    }
    globals.raw_set("os", os)?;
    for name in REMOVED_GLOBALS {
        globals.raw_set(*name, Value::Nil)?;
    }
    let string: mlua::Table = globals.raw_get("string")?;
    string.raw_set("dump", Value::Nil)?;

    globals.raw_set("collectgarbage", lua.create_function(collectgarbage)?)?;
    let log = log_table(&lua, thing)?;
    globals.raw_set("print", log.raw_get::<Value>("info")?)?;
    globals.raw_set("log", log)?;

    let hook_budget = Arc::clone(&budget);
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_STEP),
        move |lua, _| hook_budget.tick(lua),
    )?;
    Ok((lua, budget))
}

/// Runs the guard prelude (budget checks around C functions, `string.rep` sizes, C loop
/// charges; `flags` is the call thread's table, `strfns` the bounded pattern functions the
/// prelude installs as `string.find` & co.) and sets the memory limit.
pub(crate) fn install_guards(
    lua: &Lua,
    budget: &Arc<Budget>,
    limits: LuaLimits,
    flags: &Table,
    strfns: Table,
) -> mlua::Result<()> {
    let guard_budget = Arc::clone(budget);
    let guard = lua.create_function(move |_, ()| guard_budget.check().map(|_| ()))?;
    let memory = limits.memory_bytes;
    let rep_check = lua.create_function(move |_, (s, n, sep): (Value, Value, Value)| {
        rep_size_check(memory, &s, &n, &sep)
    })?;
    let charge_budget = Arc::clone(budget);
    // charge(first, last): a C loop over first..=last; non-numbers are left to the library
    // function to reject.
    let charge = lua.create_function(move |lua, (first, last): (Value, Value)| {
        match (lua.coerce_number(first)?, lua.coerce_number(last)?) {
            // `as` saturates: a range beyond u64 charges u64::MAX.
            (Some(first), Some(last)) if last >= first => {
                charge_budget.charge((last - first + 1.0) as u64)
            }
            _ => Ok(()),
        }
    })?;
    budget.arm();
    lua.load(GUARD_PRELUDE)
        .set_name("=sandbox")
        .set_mode(ChunkMode::Text)
        .call::<()>((guard, rep_check, charge, flags, strfns))?;

    lua.set_memory_limit(limits.memory_bytes)?;
    Ok(())
}

/// Reports `string.rep` results that could never fit the VM's memory limit as memory errors.
/// Without this, Lua's own size check (2 GiB) answers first with a plain script error.
fn rep_size_check(memory: usize, s: &Value, n: &Value, sep: &Value) -> mlua::Result<()> {
    let len = |v: &Value| match v {
        Value::String(s) => s.as_bytes().len() as f64,
        _ => 0.0,
    };
    let count = match n {
        Value::Integer(i) => *i as f64,
        Value::Number(f) => *f,
        _ => 0.0,
    };
    let need = len(s) * count + len(sep) * (count - 1.0).max(0.0);
    if memory > 0 && need > memory as f64 {
        return Err(mlua::Error::MemoryError(format!(
            "not enough memory: string.rep needs {need} bytes, the VM limit is {memory}"
        )));
    }
    Ok(())
}

/// `collectgarbage` restricted to what scripts legitimately need: `count`, and explicit
/// collections as no-ops; tuning the collector (stop, generational, ...) is refused.
fn collectgarbage(lua: &Lua, opt: Option<String>) -> mlua::Result<Value> {
    match opt.as_deref() {
        Some("count") => Ok(Value::Number(lua.used_memory() as f64 / 1024.0)),
        None | Some("collect") | Some("step") => Ok(Value::Integer(0)),
        Some(other) => Err(mlua::Error::runtime(format!(
            "{} collectgarbage({other:?}) is not available in the sandbox",
            caller_location(lua)
        ))),
    }
}

/// The `log` table: `log.info(...)` etc. forward to `tracing` with the thing name as a field.
fn log_table(lua: &Lua, thing: &str) -> mlua::Result<mlua::Table> {
    let log = lua.create_table()?;
    for level in ["trace", "debug", "info", "warn", "error"] {
        let thing: Arc<str> = Arc::from(thing);
        let f = lua.create_function(move |_, args: Variadic<Value>| {
            let msg = args.iter().map(display).collect::<Vec<_>>().join(" ");
            match level {
                "trace" => tracing::trace!(thing = %thing, "{msg}"),
                "debug" => tracing::debug!(thing = %thing, "{msg}"),
                "info" => tracing::info!(thing = %thing, "{msg}"),
                "warn" => tracing::warn!(thing = %thing, "{msg}"),
                _ => tracing::error!(thing = %thing, "{msg}"),
            }
            Ok(())
        })?;
        log.raw_set(level, f)?;
    }
    Ok(log)
}

/// Formats a log argument without calling into Lua (no `__tostring`), so logging cannot fail.
fn display(value: &Value) -> String {
    match value {
        Value::Nil => "nil".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.to_string_lossy(),
        other => other.type_name().into(),
    }
}

/// `path:line:` of the Lua code calling the current Rust callback, for error messages.
pub(crate) fn caller_location(lua: &Lua) -> String {
    lua.inspect_stack(1, |d| {
        let src = d
            .source()
            .short_src
            .map(|s| s.into_owned())
            .unwrap_or_else(|| "?".into());
        match d.current_line() {
            Some(line) => format!("{src}:{line}:"),
            None => format!("{src}:"),
        }
    })
    .unwrap_or_default()
}

/// Maps a failed (or tripped) call to a [`ThingError`]; the budget's verdict wins over the
/// error value because scripts can rethrow or wrap the abort error.
pub(crate) fn classify(
    thing: &str,
    limits: &LuaLimits,
    budget: &Budget,
    err: Option<&mlua::Error>,
) -> Option<ThingError> {
    match budget.trip() {
        Trip::Instructions => Some(ThingError::InstructionLimit {
            thing: thing.to_owned(),
            limit: limits.instructions,
        }),
        // A call that ended past its deadline fails even if nothing tripped the hook: a long
        // C function (a backtracking pattern) may have run all that time without a hook call.
        Trip::Deadline => Some(ThingError::Timeout {
            thing: thing.to_owned(),
            deadline: limits.deadline,
        }),
        Trip::None if budget.past_deadline() => Some(ThingError::Timeout {
            thing: thing.to_owned(),
            deadline: limits.deadline,
        }),
        Trip::None => err.map(|e| {
            if is_memory_error(e) {
                ThingError::MemoryLimit {
                    thing: thing.to_owned(),
                    limit: limits.memory_bytes,
                }
            } else {
                ThingError::Script(message(e))
            }
        }),
    }
}

fn is_memory_error(err: &mlua::Error) -> bool {
    match err {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

/// The script-facing part of an mlua error: `file:line: message`, without mlua's prefixes and
/// the stack traceback.
pub(crate) fn message(err: &mlua::Error) -> String {
    let text = match err {
        mlua::Error::RuntimeError(m) | mlua::Error::MemoryError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::CallbackError { cause, .. } => return message(cause),
        mlua::Error::WithContext { cause, .. } => return message(cause),
        other => other.to_string(),
    };
    match text.find("\nstack traceback:") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}
