//! Rust client for Tandem and the `tandem` CLI.
//!
//! - [`api`]: a typed client for control's HTTP API.
//! - [`collab`]: a Rust client for the relay (sync a `yrs::Doc`, awareness, revocation).
//! - [`dev`]: `tandem dev`, control (and later the relay) in one process on SQLite.

pub mod api;
pub mod collab;
pub mod dev;
