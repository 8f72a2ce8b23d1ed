//! The persistent AlwaysOn tunnel from the gateway to its platform.

pub mod outbox;
