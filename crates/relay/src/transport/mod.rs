//! Everything that touches sockets: the HTTP request before the upgrade
//! ([`handshake`]), WebSocket frames after it ([`ws`]), one task per
//! WebSocket connection ([`conn`]), the per-IP handshake limit
//! ([`limits`]), and health, readiness and metrics ([`ops`]).

pub mod conn;
pub mod handshake;
pub mod limits;
pub mod ops;
pub mod ws;
