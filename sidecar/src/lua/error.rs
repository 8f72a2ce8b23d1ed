//! Errors of the Lua thing runtime: load-time ([`LuaError`]) and per-call ([`ThingError`]).

use edgeway_protocol::basetype::BaseType;
use std::path::PathBuf;
use std::time::Duration;

/// Why things could not be loaded; `Display` names the file and line or the thing at fault.
#[derive(Debug, thiserror::Error)]
pub enum LuaError {
    /// The template file could not be read.
    #[error("cannot read Lua template {}: {source}", path.display())]
    Read {
        /// The template file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The template failed to compile or run, or defines something invalid.
    /// `message` starts with `path:line:` whenever the line is known.
    #[error("{message} (loading thing {thing:?})")]
    Template {
        /// The thing being instantiated.
        thing: String,
        /// The template file.
        path: PathBuf,
        /// What went wrong, prefixed with `path:line:`.
        message: String,
    },
    /// A thing names a template the config does not define.
    #[error("thing {thing:?} uses unknown template {template:?}")]
    UnknownTemplate {
        /// The thing.
        thing: String,
        /// The template name it asked for.
        template: String,
    },
    /// Two things (or two templates) share a name.
    #[error("duplicate {kind} name {name:?}")]
    Duplicate {
        /// `"thing"` or `"template"`.
        kind: &'static str,
        /// The repeated name.
        name: String,
    },
    /// A thing's settings are invalid (bad override, zero scan rate, ...).
    #[error("thing {thing:?}: {message}")]
    Thing {
        /// The thing.
        thing: String,
        /// What is wrong.
        message: String,
    },
    /// The Lua VM itself could not be set up (out of memory, ...).
    #[error("thing {thing:?}: cannot create Lua VM: {message}")]
    Vm {
        /// The thing.
        thing: String,
        /// The mlua error.
        message: String,
    },
}

/// Why a call on a thing failed; the server maps these to HTTP statuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThingError {
    /// No thing of that name is loaded.
    #[error("unknown thing {0:?}")]
    UnknownThing(String),
    /// The thing has no such property.
    #[error("thing {thing:?} has no property {property:?}")]
    UnknownProperty {
        /// The thing.
        thing: String,
        /// The property asked for.
        property: String,
    },
    /// The thing has no such service.
    #[error("thing {thing:?} has no service {service:?}")]
    UnknownService {
        /// The thing.
        thing: String,
        /// The service asked for.
        service: String,
    },
    /// A caller-supplied value (property write or service input) has the wrong type.
    #[error("{name} must be of type {expected}")]
    WrongType {
        /// The property or input name.
        name: String,
        /// Its declared type.
        expected: BaseType,
    },
    /// The call ran past its wall-clock deadline and was aborted.
    #[error("thing {thing:?}: call exceeded its deadline of {deadline:?}")]
    Timeout {
        /// The thing.
        thing: String,
        /// The configured deadline.
        deadline: Duration,
    },
    /// The call executed more VM instructions than allowed and was aborted.
    #[error("thing {thing:?}: call exceeded its budget of {limit} instructions")]
    InstructionLimit {
        /// The thing.
        thing: String,
        /// The configured budget.
        limit: u64,
    },
    /// The thing's VM hit its memory limit during the call.
    #[error("thing {thing:?}: Lua VM memory limit of {limit} bytes exceeded")]
    MemoryLimit {
        /// The thing.
        thing: String,
        /// The configured limit.
        limit: usize,
    },
    /// The thing was still busy with earlier calls after waiting this long; its VM may be
    /// stuck in a C function the budget cannot interrupt (see docs/lua.md).
    #[error("thing {thing:?} is busy: no turn after waiting {waited:?}")]
    Busy {
        /// The thing.
        thing: String,
        /// How long the call waited for the VM.
        waited: Duration,
    },
    /// The script failed: runtime error (with `file:line`), bad return value, or bad property value.
    #[error("{0}")]
    Script(String),
    /// The runtime itself failed (a panicked call); the thing remains loaded.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ThingError {
    /// The HTTP status this failure answers with, whatever carries the answer (the REST
    /// server, the tunnel's protocol status, an MQTT response).
    pub fn http_status(&self) -> u16 {
        match self {
            ThingError::UnknownThing(..)
            | ThingError::UnknownProperty { .. }
            | ThingError::UnknownService { .. } => 404,
            ThingError::WrongType { .. } => 400,
            ThingError::Timeout { .. } => 504,
            _ => 500,
        }
    }
}
