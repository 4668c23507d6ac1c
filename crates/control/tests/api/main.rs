//! End-to-end tests of control: each test starts the real `Application` on
//! port 0 with its own database (a temporary SQLite file, or a fresh
//! PostgreSQL database) and talks to it over HTTP. Every test runs on both
//! backends: `…::sqlite` and `…::postgres`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod admin;
mod bad_input;
mod browser;
mod collab;
mod conversations;
mod demo;
mod extensions;
mod files;
mod fuzz_bodies;
mod identity;
mod instance_admin;
mod invites;
mod jwt;
mod limits;
mod lists;
mod members;
mod message_sets;
mod openapi;
mod replicas;
mod sharing;
mod signin;
mod snapshots;
mod streaming;
mod sync;
mod sync_bench;
mod verify_batch;
mod webhooks;
mod workspace_events;
