//! The one implementation of Tessera's access-token format and verification rules, shared by
//! the server (which signs) and every client (which verifies).
