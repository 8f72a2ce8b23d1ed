//! Where a thing's Lua runs: on the async worker that asked, leaving it only when needed.
//!
//! Most service calls take microseconds; handing each to tokio's blocking pool cost two
//! context switches, more than the call itself. So a call starts on the worker, within a
//! short slice. When it outlives the slice (the budget hook asks for a yield) or reaches work
//! the hook cannot slice (the sandbox's `offload` wrappers), its thread yields back to Rust,
//! and the rest runs inside `block_in_place`, which first hands the worker's other tasks to
//! another thread. Budgets, errors and results are the same either way.

use super::sandbox::Budget;
use mlua::{Function, IntoLuaMulti, Lua, MultiValue, Table, Thread, ThreadStatus};
use std::cell::RefCell;
use std::time::Duration;
use tokio::runtime::{Handle, RuntimeFlavor};

/// How long Lua may run on an async worker per operation before moving off it: tokio's
/// guidance for time between `.await`s is 10–100 µs.
pub(crate) const SLICE: Duration = Duration::from_micros(100);

/// Whether the current thread may run Lua inline: only a multi-thread runtime can move a
/// worker's tasks away (`block_in_place`); elsewhere calls go to the blocking pool.
pub(crate) fn inline_allowed() -> bool {
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
}

/// The Lua thread a VM's calls run on, reused until a call fails, and the flags table the
/// sandbox's `offload` wrappers read (`inline`, and `outer`: the current call thread).
pub(crate) struct Caller {
    thread: RefCell<Thread>,
    flags: Table,
}

/// How a call ended: its values or error, and whether it left the worker.
pub(crate) struct Outcome {
    pub result: mlua::Result<MultiValue>,
    pub offloaded: bool,
}

impl Caller {
    /// Creates the call thread (with an empty function until the first call) and the flags.
    pub(crate) fn new(lua: &Lua) -> mlua::Result<Caller> {
        let idle = lua.create_function(|_, ()| Ok(()))?;
        let thread = lua.create_thread(idle)?;
        let flags = lua.create_table()?;
        flags.raw_set("outer", &thread)?;
        Ok(Caller {
            thread: RefCell::new(thread),
            flags,
        })
    }

    /// The table the sandbox reads to know whether a call is on a worker, and on which thread.
    pub(crate) fn flags(&self) -> &Table {
        &self.flags
    }

    /// Calls `f(args)` on the call thread. On a worker (an active slice in `budget`) the call
    /// starts inline and finishes under `block_in_place` if it yields; the slice is left
    /// expired, so later calls of the same operation move off the worker at once.
    pub(crate) fn call(
        &self,
        lua: &Lua,
        budget: &Budget,
        f: Function,
        args: impl IntoLuaMulti,
    ) -> Outcome {
        if let Err(e) = self.start(lua, f) {
            return Outcome {
                result: Err(e),
                offloaded: false,
            };
        }
        let inline = budget.on_worker();
        if let Err(e) = self.flags.raw_set("inline", inline) {
            return Outcome {
                result: Err(e),
                offloaded: false,
            };
        }
        let thread = self.thread.borrow();
        let mut result = thread.resume::<MultiValue>(args);
        let mut offloaded = false;
        while result.is_ok() && thread.status() == ThreadStatus::Resumable {
            // Only the hook and the sandbox's `offload` yield this thread.
            offloaded = true;
            let slice = budget.end_slice();
            result = self
                .flags
                .raw_set("inline", false)
                .and_then(|()| off_worker(inline, || thread.resume::<MultiValue>(())));
            budget.restore_slice(slice);
        }
        if inline {
            let _ = self.flags.raw_set("inline", false);
        }
        Outcome { result, offloaded }
    }

    /// Prepares the thread to run `f`. A thread that ended in an error is replaced, not reset:
    /// Lua leaves hooks disabled on a thread an error unwound out of a hook, and the budget
    /// hook must run on every call.
    fn start(&self, lua: &Lua, f: Function) -> mlua::Result<()> {
        let mut thread = self.thread.borrow_mut();
        if thread.status() == ThreadStatus::Error {
            *thread = lua.create_thread(f)?;
            self.flags.raw_set("outer", &*thread)
        } else {
            thread.reset(f)
        }
    }
}

/// Runs `f` where blocking is fine: under `block_in_place` when called on a worker.
fn off_worker<R>(on_worker: bool, f: impl FnOnce() -> R) -> R {
    if on_worker {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}
