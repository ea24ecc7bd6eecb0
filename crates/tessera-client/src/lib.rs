//! What other Rust services link to trust Tessera: token verification with the exact rules the
//! server signs by (re-exported from [`tessera_token`]), so a service never holds a signing
//! secret and never re-implements a JWT check.

pub use tessera_token;
