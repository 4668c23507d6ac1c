//! Tandem control: identity, tenancy and permissions over HTTP.
//!
//! - [`config`]: the typed configuration (flags and `TANDEM_*` env).
//! - [`startup`]: `Application::build(config)` → `port()` / `run_until_stopped()`.
//! - [`http`]: handlers, one module per resource, and the route table.
//! - [`authz`]: `can(actor, action, kind, facts)`, the one authorization surface (pure).
//! - [`store`]: diesel queries; loads the facts `can` decides on.
//! - [`db`]: one connection type over SQLite and PostgreSQL, pool, migrations.
//! - [`auth`]: identity-provider JWT verification.
//! - [`crypto`]: ids, tokens, password and token hashing, sealing of stored API keys.
//! - [`files`]: file bytes (directory or S3 backend) and their collector.
//! - [`mail`]: outgoing email (log or SMTP sender) and the outbox dispatcher.
//! - [`ratelimit`]: per-IP limits on login and signup.
//! - [`validate`]: parsing user input at the edge.
//! - [`streams`]: per-user caps of event streams, one poll loop per conversation.
//! - [`page`]: `?limit=&cursor=` keyset pagination shared by every list.
//! - [`error`]: `ApiError` and its mapping to status + JSON.
//! - [`observe`]: request ids, the request span, access log and HTTP metrics.
//! - [`openapi`]: the OpenAPI 3.1 document (`GET /openapi.json`).
//! - [`cors`]: cross-origin access for browser apps (`TANDEM_CORS_ORIGINS`).
//! - [`metrics`]: Prometheus metrics (`GET /metrics`).
//!
//! Control never depends on the relay; they share only `tandem-protocol`.

pub mod admin;
pub mod auth;
pub mod authz;
pub mod config;
pub mod cors;
pub mod crypto;
pub mod db;
pub mod error;
pub mod extensions;
pub mod files;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod page;
pub mod ratelimit;
pub mod startup;
pub mod state;
pub mod store;
pub mod streams;
pub mod sync_live;
pub mod telemetry;
pub mod validate;
pub mod verify_queue;
pub mod webhooks;

pub use config::ControlConfig;
pub use startup::Application;
