//! The permissions the server itself checks, as one typed set. A handler names a variant
//! ([`Perm::UsersRead`]), so a misspelt permission does not compile; every variant's text is
//! checked against the `resource:action` grammar at compile time (the `const` block below), so
//! none can fail to parse on a request and turn into a 500.

use tessera_token::Permission;

/// A permission an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perm {
    /// Reading the audit log.
    AuditRead,
    /// Listing and reading service accounts.
    ClientsRead,
    /// Creating service accounts.
    ClientsCreate,
    /// Changing service accounts and rotating their secrets.
    ClientsUpdate,
    /// Disabling service accounts.
    ClientsDelete,
    /// Reading flags through the admin API, and evaluating them as a service account.
    FlagsRead,
    /// Changing flags (platform admins) and a tenant's overrides (its admins).
    FlagsWrite,
    /// Listing and reading roles.
    RolesRead,
    /// Creating roles.
    RolesCreate,
    /// Changing roles.
    RolesUpdate,
    /// Deleting roles.
    RolesDelete,
    /// Listing another account's sessions.
    SessionsRead,
    /// Posting status events (the platform's status page).
    StatusWrite,
    /// Revoking another account's sessions.
    SessionsRevoke,
    /// Listing and reading tenants (platform admins).
    TenantsRead,
    /// Creating tenants (platform admins).
    TenantsCreate,
    /// Changing tenants (platform admins).
    TenantsUpdate,
    /// Disabling tenants (platform admins).
    TenantsDelete,
    /// Introspecting tokens and reading the revocation feed (service accounts).
    TokensIntrospect,
    /// Revoking other clients' tokens (service accounts).
    TokensRevoke,
    /// Listing and reading accounts.
    UsersRead,
    /// Creating accounts.
    UsersCreate,
    /// Changing, unlocking and resetting the password of accounts.
    UsersUpdate,
    /// Disabling accounts.
    UsersDelete,
}

impl Perm {
    /// Every permission of the set.
    pub const ALL: [Perm; 24] = [
        Self::AuditRead,
        Self::ClientsRead,
        Self::ClientsCreate,
        Self::ClientsUpdate,
        Self::ClientsDelete,
        Self::FlagsRead,
        Self::FlagsWrite,
        Self::RolesRead,
        Self::RolesCreate,
        Self::RolesUpdate,
        Self::RolesDelete,
        Self::SessionsRead,
        Self::SessionsRevoke,
        Self::StatusWrite,
        Self::TenantsRead,
        Self::TenantsCreate,
        Self::TenantsUpdate,
        Self::TenantsDelete,
        Self::TokensIntrospect,
        Self::TokensRevoke,
        Self::UsersRead,
        Self::UsersCreate,
        Self::UsersUpdate,
        Self::UsersDelete,
    ];

    /// As roles and scopes write it: `resource:action`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AuditRead => "audit:read",
            Self::ClientsRead => "clients:read",
            Self::ClientsCreate => "clients:create",
            Self::ClientsUpdate => "clients:update",
            Self::ClientsDelete => "clients:delete",
            Self::FlagsRead => "flags:read",
            Self::FlagsWrite => "flags:write",
            Self::RolesRead => "roles:read",
            Self::RolesCreate => "roles:create",
            Self::RolesUpdate => "roles:update",
            Self::RolesDelete => "roles:delete",
            Self::SessionsRead => "sessions:read",
            Self::SessionsRevoke => "sessions:revoke",
            Self::StatusWrite => "status:write",
            Self::TenantsRead => "tenants:read",
            Self::TenantsCreate => "tenants:create",
            Self::TenantsUpdate => "tenants:update",
            Self::TenantsDelete => "tenants:delete",
            Self::TokensIntrospect => "tokens:introspect",
            Self::TokensRevoke => "tokens:revoke",
            Self::UsersRead => "users:read",
            Self::UsersCreate => "users:create",
            Self::UsersUpdate => "users:update",
            Self::UsersDelete => "users:delete",
        }
    }

    /// The parsed permission, for coverage checks.
    pub fn permission(self) -> Result<Permission, tessera_token::InvalidPermission> {
        // Cannot fail: every text passed the compile-time check below.
        Permission::parse(self.as_str())
    }
}

impl std::fmt::Display for Perm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `text` is `resource:action` with both parts made of lowercase letters, digits, `_`,
/// `-` and `.` (no wildcard: an endpoint needs a definite permission).
const fn is_permission(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut colons = 0;
    let mut part_len = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b':' {
            if part_len == 0 {
                return false;
            }
            colons += 1;
            part_len = 0;
        } else if b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.') {
            part_len += 1;
        } else {
            return false;
        }
        i += 1;
    }
    colons == 1 && part_len > 0
}

const _: () = {
    let mut i = 0;
    while i < Perm::ALL.len() {
        assert!(is_permission(Perm::ALL[i].as_str()));
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permission_parses_and_the_grammar_check_agrees_with_the_parser() {
        for perm in Perm::ALL {
            assert!(perm.permission().is_ok(), "{perm}");
        }
        for text in ["users:read", "a.b-c_d:x9"] {
            assert!(
                is_permission(text) && Permission::parse(text).is_ok(),
                "{text}"
            );
        }
        for text in [
            "users",
            ":read",
            "users:",
            "Users:read",
            "users:read:x",
            "users:*",
        ] {
            assert!(!is_permission(text), "{text}");
        }
    }
}
