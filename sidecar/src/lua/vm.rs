//! Building a thing's VM: the sandbox (safe libraries, budget hook, guards, memory limit), the
//! bounded pattern functions (`strfns`) and the call thread its calls run on (`offload`). All
//! three sit below this module; none imports another's construction.

use std::sync::Arc;

use mlua::Lua;

use super::offload::Caller;
use super::sandbox::{self, Budget};
use super::strfns;
use super::LuaLimits;

/// Creates a sandboxed VM for `thing`, with the thread its calls run on.
pub(crate) fn new_vm(thing: &str, limits: LuaLimits) -> mlua::Result<(Lua, Arc<Budget>, Caller)> {
    let (lua, budget) = sandbox::open(thing, limits)?;
    let caller = Caller::new(&lua, &budget)?;
    let strfns = strfns::install(&lua, &budget)?;
    sandbox::install_guards(&lua, &budget, limits, caller.flags(), strfns)?;
    Ok((lua, budget, caller))
}
