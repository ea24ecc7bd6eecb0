//! Authentication: passwords now; login, refresh and logout build on it.

pub mod password;
