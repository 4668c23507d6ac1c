//! Rust client for Tandem and the `tandem` CLI.
//!
//! - [`api`]: a typed client for control's HTTP API.
//! - [`audit`]: `tandem audit verify`, an org's audit chain checked from the database or an export.
//! - [`collab`]: a Rust client for the relay (sync a `yrs::Doc`, awareness, revocation).
//! - [`dev`]: `tandem dev`, control and the relay in one process on SQLite.
//! - [`bench`]: `tandem bench`, the load generator and benchmarks.

pub mod api;
pub mod audit;
pub mod bench;
pub mod collab;
pub mod dev;
