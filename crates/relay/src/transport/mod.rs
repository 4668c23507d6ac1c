//! Everything that touches sockets: the HTTP request before the upgrade
//! ([`handshake`]), WebSocket frames after it ([`ws`]), one task per
//! WebSocket connection ([`conn`]), and the per-IP handshake limit
//! ([`limits`]).

pub mod conn;
pub mod handshake;
pub mod limits;
pub mod ws;
