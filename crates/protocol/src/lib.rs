//! The wire contract every Tandem component shares.
//!
//! - [`room`]: room ids (`doc-…`, `diagram-…`, `task-…`) and their parsing.
//! - [`http`]: JSON bodies of control's HTTP API (camelCase on the wire).
//! - [`admin`]: org members, ownership transfer, workspace settings (guest access), the audit log.
//! - [`chat`]: conversations, messages, streaming events, shares, usage, invites, settings.
//! - [`sets`]: message sets (several answers per turn, one selected), parts, branches.
//! - [`collab`]: the collaboration handshake, access checks, relay notices, close codes.
//! - [`error`]: the `{"error":{"code","message","requestId"}}` envelope and its codes.
//! - [`extensions`]: org extensions (plugins, themes), their manifests and per-workspace settings;
//!   instance administration (`/admin/*`).
//! - [`identity`]: email verification, org join policies and join requests, identity linking.
//! - [`origin`]: allowed browser origins (`TANDEM_CORS_ORIGINS`), for control and relay.
//! - [`sync`]: the sync engine's push, pull and event bodies, and its bounds.
//! - [`yjs`]: a recursion-free nesting check of Yjs v1 updates, run before yrs decodes them.
//!
//! This crate has no I/O and depends on nothing but serde (and `utoipa`, for
//! OpenAPI schemas, with the optional `openapi` feature): control, relay and
//! clients meet here and nowhere else.

pub mod admin;
pub mod chat;
pub mod collab;
pub mod error;
pub mod extensions;
pub mod files;
pub mod http;
pub mod identity;
pub mod origin;
pub mod room;
pub mod sets;
pub mod sha256_state;
pub mod sync;
pub mod webhooks;
pub mod yjs;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use room::{ResourceType, RoomId, RoomIdError};
