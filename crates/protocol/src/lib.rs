//! The wire contract every Tandem component shares.
//!
//! - [`room`]: room ids (`doc-…`, `diagram-…`, `task-…`) and their parsing.
//! - [`http`]: JSON bodies of control's HTTP API (camelCase on the wire).
//! - [`chat`]: conversations, messages, streaming events, shares, usage, invites, settings.
//! - [`collab`]: the collaboration handshake, access checks, relay notices, close codes.
//! - [`error`]: the `{"error":{"code","message"}}` envelope and its codes.
//! - [`origin`]: allowed browser origins (`TANDEM_CORS_ORIGINS`), for control and relay.
//!
//! This crate has no I/O and depends on nothing but serde: control, relay and
//! clients meet here and nowhere else.

pub mod chat;
pub mod collab;
pub mod error;
pub mod http;
pub mod origin;
pub mod room;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use room::{ResourceType, RoomId, RoomIdError};
