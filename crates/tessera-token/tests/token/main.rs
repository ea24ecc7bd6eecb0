//! `tessera-token` against hostile and arbitrary input.

mod attacks;
mod properties;
mod support;
