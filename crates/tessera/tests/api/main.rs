//! Integration tests: the real server, the real databases, the real binary.

mod helpers;

mod admin_users;
mod attempts;
mod audit;
mod auth;
mod cli;
mod clients;
mod containment;
mod cookies;
mod csp;
mod errors;
mod feed;
mod flags;
mod flags_client;
mod health;
mod interop;
mod introspection;
mod keys;
mod layers;
mod lists;
mod mfa;
mod migrations;
mod openfeature;
mod ratelimit;
mod realtime;
mod revocation;
mod roles;
mod sdk;
mod sessions;
mod tenant_disable;
mod tenants;
mod users;
