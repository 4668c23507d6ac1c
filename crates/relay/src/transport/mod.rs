//! Everything that touches sockets: the HTTP request before the upgrade
//! ([`handshake`]), the replay of its bytes into the WebSocket library
//! ([`prefixed`]), and one task per WebSocket connection ([`conn`]).

pub mod conn;
pub mod handshake;
pub mod prefixed;
