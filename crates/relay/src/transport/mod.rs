//! Everything that touches sockets: the HTTP request before the upgrade
//! ([`handshake`]), the replay of its bytes into the WebSocket library
//! ([`prefixed`]), one task per WebSocket connection ([`conn`]), and the
//! per-IP handshake limit ([`limits`]).

pub mod conn;
pub mod handshake;
pub mod limits;
pub mod prefixed;
