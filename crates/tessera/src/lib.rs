//! Tessera: the one server a platform trusts for identity, sessions, tokens, permissions, flags,
//! public configuration and authenticated real-time events.
//!
//! The binary is a thin CLI over this library: [`Application::build`] turns a [`config::Config`]
//! into a ready server, and [`Application::run`] serves it on a listener until a shutdown signal.

pub mod app;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod caller;
pub mod cleanup;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod console;
pub mod db;
pub mod digest;
pub mod flags;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod jobs;
pub mod keys;
pub mod master;
pub mod oauth;
pub mod passwords;
pub mod permissions;
pub mod rbac;
pub mod realtime;
pub mod revocations;
pub mod sessions;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod tenants;
pub mod text;
pub mod users;

pub use app::Application;
pub use state::AppState;
