//! Integration tests: the real server, the real databases, the real binary.

mod helpers;

mod cli;
mod errors;
mod health;
mod interop;
mod keys;
mod migrations;
mod users;
