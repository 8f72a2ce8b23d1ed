//! Where a thing's Lua runs: on the async worker that asked, leaving it only when needed.
//!
//! Most service calls take microseconds; handing each to tokio's blocking pool cost two
//! context switches, more than the call itself. So a call starts on the worker, within a
//! short slice. When it outlives the slice (the budget hook asks for a yield) or reaches work
//! the hook cannot slice (the sandbox's `offload` wrappers), its thread yields back to Rust,
//! and the rest runs inside `block_in_place`, which first hands the worker's other tasks to
//! another thread. Budgets, errors and results are the same either way.

use super::sandbox::{Budget, INLINE_MEMORY};
use mlua::ffi;
use mlua::{Function, IntoLuaMulti, Lua, MultiValue, Table, Thread, Value};
use std::cell::{Cell, RefCell};
use std::os::raw::c_int;
use std::time::Duration;
use tokio::runtime::{Handle, RuntimeFlavor};

/// How long Lua may run on an async worker per operation before moving off it: tokio's
/// guidance for time between `.await`s is 10–100 µs.
pub(crate) const SLICE: Duration = Duration::from_micros(100);

/// Calls over [`INLINE_MEMORY`] between two full collections when memory is not growing.
const COLLECT_EVERY: u32 = 64;

/// Whether the current thread may run Lua inline: only a multi-thread runtime can move a
/// worker's tasks away (`block_in_place`); elsewhere calls go to the blocking pool.
pub(crate) fn inline_allowed() -> bool {
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
}

/// The Lua thread a VM's calls run on, reused while calls succeed, and the flags table the
/// sandbox's `offload` wrappers read (`inline`, and `outer`: the current call thread).
pub(crate) struct Caller {
    thread: RefCell<Thread>,
    flags: Table,
    /// The key `inline`, made once: set twice per call, a key made per set cost a protected
    /// call each (mlua creates strings in one).
    inline: mlua::String,
    /// Memory in use after the last full collection by `over_inline_memory`, and calls over
    /// the bound since.
    collected: Cell<(usize, u32)>,
    /// Whether a call left the worker since `take_moved` last read it.
    moved: Cell<bool>,
}

/// One resume of the call thread.
enum Step {
    Yielded,
    Finished(MultiValue),
}

impl Caller {
    /// Creates the call thread and the flags, and tells `budget` which thread may be yielded.
    pub(crate) fn new(lua: &Lua, budget: &Budget) -> mlua::Result<Caller> {
        let caller = Caller {
            thread: RefCell::new(new_thread(lua)?),
            flags: lua.create_table()?,
            inline: lua.create_string("inline")?,
            collected: Cell::new((0, 0)),
            moved: Cell::new(false),
        };
        caller.adopt(budget)?;
        Ok(caller)
    }

    /// The table the sandbox reads to know whether a call is on a worker, and on which thread.
    pub(crate) fn flags(&self) -> &Table {
        &self.flags
    }

    /// Calls `f(args)` on the call thread. On a worker (an active slice in `budget`) the call
    /// starts inline and finishes under `block_in_place` if it yields; the slice is left
    /// expired, so later calls of the same operation move off the worker at once. A VM holding
    /// more than [`INLINE_MEMORY`] could hand it to a C loop at once: its calls start off it.
    pub(crate) fn call(
        &self,
        lua: &Lua,
        budget: &Budget,
        f: Function,
        args: impl IntoLuaMulti,
    ) -> mlua::Result<MultiValue> {
        let on_worker = budget.on_worker();
        let start_off = on_worker && self.over_inline_memory(lua);
        let mut step = self
            .prepare(lua, budget, on_worker && !start_off)
            .and_then(|()| {
                let mut args = args.into_lua_multi(lua)?;
                args.push_front(Value::Function(f));
                if start_off {
                    self.resume_off_worker(lua, budget, on_worker, args, true)
                } else {
                    resume(lua, &self.thread.borrow(), args, true)
                }
            });
        while let Ok(Step::Yielded) = step {
            // Only the hook and the sandbox's `offload` yield this thread.
            step = self.resume_off_worker(lua, budget, on_worker, MultiValue::new(), false);
        }
        if on_worker {
            let _ = self.flags.raw_set(&self.inline, false);
        }
        match step {
            Ok(Step::Finished(values)) => Ok(values),
            Ok(Step::Yielded) => unreachable!("the loop above resumes until the thread stops"),
            Err(e) => Err(e),
        }
    }

    /// Resumes the call thread with the slice ended, under `block_in_place` when on a worker,
    /// and records that a call moved.
    fn resume_off_worker(
        &self,
        lua: &Lua,
        budget: &Budget,
        on_worker: bool,
        args: MultiValue,
        first: bool,
    ) -> mlua::Result<Step> {
        self.moved.set(true);
        let slice = budget.end_slice();
        let step = self.flags.raw_set(&self.inline, false).and_then(|()| {
            off_worker(on_worker, || {
                resume(lua, &self.thread.borrow(), args, first)
            })
        });
        budget.restore_slice(slice);
        step
    }

    /// Whether a call left the worker since the last `take_moved`; resets it.
    pub(crate) fn take_moved(&self) -> bool {
        self.moved.replace(false)
    }

    /// Whether the VM holds more than [`INLINE_MEMORY`]. Garbage alone can keep it there after
    /// one big request (the sandbox's `collectgarbage` does nothing, small calls barely drive
    /// the collector), so it first collects, off the worker: when memory has doubled since
    /// the last collection, else once per [`COLLECT_EVERY`] calls over the bound.
    fn over_inline_memory(&self, lua: &Lua) -> bool {
        let used = lua.used_memory();
        if used <= INLINE_MEMORY {
            return false;
        }
        let (at, calls) = self.collected.get();
        if used / 2 > at || calls >= COLLECT_EVERY {
            // A collection error can only come from a finalizer, which the sandbox refuses.
            let _ = tokio::task::block_in_place(|| lua.gc_collect());
            self.collected.set((lua.used_memory(), 0));
        } else {
            self.collected.set((at, calls + 1));
        }
        lua.used_memory() > INLINE_MEMORY
    }

    /// Makes sure the call thread is idle and clean, replacing it if a call failed on it:
    /// Lua leaves hooks disabled on a thread an error unwound out of a hook, and the budget
    /// hook must run on every call.
    fn prepare(&self, lua: &Lua, budget: &Budget, inline: bool) -> mlua::Result<()> {
        let idle = {
            let co = self.thread.borrow().state();
            // SAFETY: `co` is a live thread of this VM (held by `self.thread`); reading its
            // status and stack height has no side effects.
            unsafe { ffi::lua_status(co) == ffi::LUA_OK && ffi::lua_gettop(co) == 0 }
        };
        if !idle {
            // A script may hold the failed thread (`coroutine.running()`); closing it would
            // run its pending closing values with hooks off, so the sandbox refuses to.
            let stopped: Table = self.flags.raw_get("stopped")?;
            stopped.raw_set(&*self.thread.borrow(), true)?;
            *self.thread.borrow_mut() = new_thread(lua)?;
            self.adopt(budget)?;
        }
        self.flags.raw_set(&self.inline, inline)
    }

    /// Publishes the current call thread to the sandbox (`flags.outer`) and the budget hook.
    fn adopt(&self, budget: &Budget) -> mlua::Result<()> {
        let thread = self.thread.borrow();
        budget.set_outer(thread.to_pointer());
        self.flags.raw_set("outer", &*thread)
    }
}

/// A fresh thread for calls. It starts with an empty stack: each call pushes its function.
fn new_thread(lua: &Lua) -> mlua::Result<Thread> {
    let thread = lua.create_thread(lua.create_function(|_, ()| Ok(()))?)?;
    // SAFETY: the new thread has not run; dropping its placeholder function leaves it idle.
    unsafe { ffi::lua_settop(thread.state(), 0) };
    Ok(thread)
}

/// Resumes the call thread with `args` (on the first resume: the function, then its
/// arguments). Unlike `Thread::resume`, it never truncates the stack of a thread suspended
/// inside a Lua function (a hook yield), which would hide that frame's values from the
/// collector.
fn resume(lua: &Lua, thread: &Thread, args: MultiValue, first: bool) -> mlua::Result<Step> {
    let co = thread.state();
    let mut status = ffi::LUA_OK;
    let mut overflow = false;
    let mut position = None;
    // SAFETY: `co` is a live thread of this VM. Inside `exec_raw` the closure sees only
    // `args` on the stack of `state`; nothing below raises a Lua error (lua_checkstack,
    // lua_xmove and lua_resume report failures by return value), so no longjmp crosses it.
    let values: MultiValue = unsafe {
        lua.exec_raw(args, |state| {
            let n = ffi::lua_gettop(state);
            if ffi::lua_checkstack(co, n) == 0 {
                overflow = true;
                ffi::lua_settop(state, 0);
                return;
            }
            ffi::lua_xmove(state, co, n);
            let nargs: c_int = if first { n - 1 } else { n };
            let mut nres: c_int = 0;
            status = ffi::lua_resume(co, state, nargs, &mut nres);
            match status {
                ffi::LUA_OK if ffi::lua_checkstack(state, nres) == 0 => {
                    overflow = true;
                    ffi::lua_settop(co, 0);
                }
                ffi::LUA_OK => ffi::lua_xmove(co, state, nres),
                // Values passed to a yield sit above the yielding frame; nothing else is
                // touched, so a frame suspended by the hook keeps its registers.
                ffi::LUA_YIELD => ffi::lua_pop(co, nres),
                // The error object; the dead thread is replaced before the next call.
                _ => {
                    position = script_position(co);
                    ffi::lua_xmove(co, state, 1);
                }
            }
        })?
    };
    if overflow {
        return Err(mlua::Error::runtime("too many values for the Lua stack"));
    }
    match status {
        ffi::LUA_OK => Ok(Step::Finished(values)),
        ffi::LUA_YIELD => Ok(Step::Yielded),
        _ => Err(into_error(status, values.into_iter().next(), position)),
    }
}

/// Where the script was when its call failed: the innermost Lua frame not of the sandbox's
/// prelude (`short_src:line:`). Lua leaves a failed thread's frames in place for this.
///
/// # Safety
/// `co` must be a live thread of the VM whose resume just failed.
unsafe fn script_position(co: *mut ffi::lua_State) -> Option<String> {
    // SAFETY: lua_getstack and lua_getinfo("Sl") only read the thread's frames and allocate
    // nothing, so they cannot raise; `ar` is plain data Lua fills in.
    unsafe {
        let mut ar: ffi::lua_Debug = std::mem::zeroed();
        let mut level = 0;
        while ffi::lua_getstack(co, level, &mut ar) != 0 {
            level += 1;
            if ffi::lua_getinfo(co, c"Sl".as_ptr(), &mut ar) == 0 || ar.currentline <= 0 {
                continue;
            }
            let source = std::ffi::CStr::from_ptr(ar.source).to_string_lossy();
            if source != "=sandbox" {
                let src = std::ffi::CStr::from_ptr(ar.short_src.as_ptr()).to_string_lossy();
                return Some(format!("{src}:{}:", ar.currentline));
            }
        }
        None
    }
}

/// The error a failed resume left, as mlua would report it. An error raised inside the
/// sandbox's prelude (a library function's argument check, called by a wrapper) is placed at
/// the script's line instead, as plain Lua would place it.
fn into_error(status: c_int, value: Option<Value>, position: Option<String>) -> mlua::Error {
    let describe = |v: Option<Value>| match v {
        Some(Value::String(s)) => {
            let text = s.to_string_lossy();
            match (position.as_deref(), prelude_message(&text)) {
                (Some(at), Some(rest)) => format!("{at} {rest}"),
                _ => text,
            }
        }
        Some(other) => format!("(error object is a {} value)", other.type_name()),
        None => "(no error object)".to_owned(),
    };
    match (status, value) {
        (ffi::LUA_ERRMEM, v) => mlua::Error::MemoryError(describe(v)),
        (_, Some(Value::Error(e))) => *e,
        (_, v) => mlua::Error::RuntimeError(describe(v)),
    }
}

/// The message of an error positioned in the prelude (`sandbox:LINE: message`).
fn prelude_message(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("sandbox:")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[digits..].strip_prefix(": ").filter(|_| digits > 0)
}

/// Runs `f` where blocking is fine: under `block_in_place` when called on a worker.
fn off_worker<R>(on_worker: bool, f: impl FnOnce() -> R) -> R {
    if on_worker {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}
