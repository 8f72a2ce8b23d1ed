//! Building a thing's VM: the sandbox (safe libraries, budget hook, guards, memory limit) and
//! the call thread its calls run on (`offload`). Both of those sit below this module; neither
//! imports the other's construction.

use std::sync::Arc;

use mlua::Lua;

use super::offload::Caller;
use super::sandbox::{self, Budget};
use super::LuaLimits;

/// Creates a sandboxed VM for `thing`, with the thread its calls run on.
pub(crate) fn new_vm(thing: &str, limits: LuaLimits) -> mlua::Result<(Lua, Arc<Budget>, Caller)> {
    let (lua, budget) = sandbox::open(thing, limits)?;
    let caller = Caller::new(&lua, &budget)?;
    sandbox::install_guards(&lua, &budget, limits, caller.flags())?;
    Ok((lua, budget, caller))
}
