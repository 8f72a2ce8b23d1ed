//! Codec for the ThingWorx AlwaysOn binary protocol, as spoken by the ThingWorx Edge
//! C SDK over a websocket (one AlwaysOn message or multipart chunk per binary message).
//! The sidecar's tunnel and the reference platform both speak through it; it does no I/O.
//!
//! # Layout
//! Modules, bottom up:
//! - [`basetype`]: ThingWorx base type names and VTQ quality, as configs and REST spell them.
//! - [`wire`]: big-endian reader/writer, length-prefixed strings, [`CodecError`].
//! - [`types`]: message, status, entity, characteristic and base type codes.
//! - [`primitive`]: typed values and their encodings; JSON conversion.
//! - [`infotable`]: data shapes and rows; REST JSON conversion.
//! - [`message`]: header and request/response/auth/bind/keep-alive bodies.
//! - [`multipart`]: splitting large messages and reassembling chunks.
//! - [`vtq`]: property pushes (`UpdateSubscribedPropertyValues`) and subscriptions.
//! - [`metadata`]: thing definitions as `GetMetadata` returns them (JSON in an InfoTable).
//!
//! Golden byte tests (`tests/golden.rs`) and property tests (`tests/properties.rs`) cover the
//! modules together. Sources for every layout are listed in docs/protocol.md.
//!
//! Typical tunnel use:
//! ```
//! use edgeway_protocol::{Message, Reassembler, split, DEFAULT_CHUNK_SIZE};
//! use std::time::Instant;
//! let auth = Message::auth(1, "my-app-key");
//! let frames = split(&auth, DEFAULT_CHUNK_SIZE).unwrap();
//! let mut rx = Reassembler::default();
//! let back = rx.push(&frames[0], Instant::now()).unwrap();
//! assert_eq!(back, Some(auth));
//! ```

#![deny(missing_docs)]

pub mod basetype;
pub mod infotable;
pub mod message;
pub mod metadata;
pub mod multipart;
pub mod primitive;
pub mod types;
pub mod vtq;
pub mod wire;

#[cfg(test)]
mod tests;

pub use infotable::{Aspect, DataShape, FieldDefinition, InfoTable};
pub use message::{Auth, Bind, Gateway, Header, Message, Request, Response};
pub use multipart::{split, split_with, Reassembler, ReassemblerConfig, DEFAULT_CHUNK_SIZE};
pub use primitive::{BlobType, Location, Primitive, StringType};
pub use types::{
    base_type_code, base_type_from_code, Characteristic, EntityType, Method, StatusCode, WireType,
};
pub use vtq::{PropertySubscription, PropertyUpdate};
pub use wire::CodecError;

/// The payload of the websocket pings both ends send: the sender's clock in milliseconds
/// since the epoch, big-endian. Never empty: edge SDKs skip zero-length websocket frames, so an
/// empty ping is never answered and the platform would take a live edge for dead.
pub fn ping_payload() -> [u8; 8] {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ms.to_be_bytes()
}
