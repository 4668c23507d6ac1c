//! Tandem relay: hosts live Yjs rooms over the y-websocket protocol.
//!
//! - [`room`]: the sans-IO room (yrs doc + awareness + sync rules). No sockets.
//! - [`hub`]: room actors and the registry (exactly one live copy per room id).
//! - [`transport`]: TCP accept, the HTTP handshake (verify before upgrade),
//!   WebSocket connections.
//! - [`control_client`]: the relay's way out to control's HTTP API.
//! - [`cluster`]: several relay nodes sharing rooms through Redis pub/sub.
//! - [`metrics`]: Prometheus metrics (`GET /metrics` on the relay's port).
//! - [`tickets`]: resume tickets (rejoin without a new control token).
//! - [`recheck`]: periodic and event-driven permission re-checks, kicks.
//! - [`config`], [`server`]: configuration and `Application::build`.
//!
//! The relay never depends on control; they share only `tandem-protocol`.

pub mod cluster;
pub mod config;
pub mod control_client;
pub mod hub;
pub mod metrics;
pub mod recheck;
pub mod room;
pub mod server;
pub mod tickets;
pub mod transport;

#[cfg(test)]
mod fuzz_tests;

pub use config::RelayConfig;
pub use server::Application;
