//! Rust client for Tandem and the `tandem` CLI.
//!
//! - [`dev`]: `tandem dev`, control (and later the relay) in one process on SQLite.

pub mod dev;
