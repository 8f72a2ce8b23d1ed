//! The process runtime both Edgeway servers (the sidecar and the reference platform) share:
//! what a server needs around its own protocol.
//!
//! # Layout
//! - [`config`]: reading config files and parsing YAML into typed structs; [`ConfigError`]
//!   names the field path.
//! - [`logging`]: the `logging:` config section and the `tracing` subscriber (text or JSON).
//! - [`tls`]: the `tls:` config section, PEM loading, the server config with its client
//!   certificate policy (CA bundle or pinned peers), the peer identity, and hot reload.
//! - [`http`]: what every HTTP listener applies: a connection cap, a header (and idle) deadline.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics` on a plain-HTTP listener.
//! - [`watch`]: reloading mounted files (TLS material, credential files) without a restart.
//! - [`ws`]: the tunnel's websocket on both ends (yawc, permessage-deflate, pings rationed).
//!
//! Nothing here knows about things, Lua or the AlwaysOn messages (that is `edgeway-protocol`).

#![deny(missing_docs)]

pub mod admin;
pub mod config;
pub mod http;
pub mod logging;
pub mod tls;
pub mod watch;
pub mod ws;

pub use config::ConfigError;
