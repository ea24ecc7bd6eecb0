//! Permissions: `resource:action` pairs with `*` as a wildcard on either side. Roles grant
//! them on the server; tokens carry them in `scope`; the server and every client decide
//! whether one covers another with [`Permission::allows`], so the rule exists once.

use std::fmt;
use std::str::FromStr;

/// Longest part (resource or action) of a permission.
const MAX_PART: usize = 64;

/// What [`Permission::parse`] accepts, as a regular expression (for schemas and forms).
pub const PATTERN: &str = r"^(\*|[a-z0-9_.-]{1,64}):(\*|[a-z0-9_.-]{1,64})$";

/// A permission, parsed once: `resource:action`, each part `*` or lowercase letters, digits,
/// `_`, `-` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission {
    resource: String,
    action: String,
}

/// Text that is not a permission. The message quotes it (escaped) and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a permission: expected `resource:action`, each lowercase letters, digits, \
     `_`, `-`, `.` or `*`"
)]
pub struct InvalidPermission(String);

impl Permission {
    /// Parses `resource:action`.
    pub fn parse(text: &str) -> Result<Self, InvalidPermission> {
        match text.split_once(':') {
            Some((resource, action)) if part_ok(resource) && part_ok(action) => Ok(Self {
                resource: resource.to_owned(),
                action: action.to_owned(),
            }),
            _ => Err(InvalidPermission(text.escape_debug().to_string())),
        }
    }

    /// Whether holding `self` allows `wanted`. A wildcard grants; asked for, it is only
    /// granted by a wildcard (holding `users:read` does not allow `users:*`).
    pub fn allows(&self, wanted: &Permission) -> bool {
        covers(&self.resource, &wanted.resource) && covers(&self.action, &wanted.action)
    }

    /// Whether the space-separated permissions in `scope` allow `wanted`. Entries that are
    /// not permissions grant nothing.
    pub fn allowed_by_scope(scope: &str, wanted: &Permission) -> bool {
        scope.split(' ').any(|held| {
            held.split_once(':').is_some_and(|(resource, action)| {
                part_ok(resource)
                    && part_ok(action)
                    && covers(resource, &wanted.resource)
                    && covers(action, &wanted.action)
            })
        })
    }

    /// The resource part.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The action part.
    pub fn action(&self) -> &str {
        &self.action
    }
}

fn part_ok(part: &str) -> bool {
    part == "*"
        || (!part.is_empty()
            && part.len() <= MAX_PART
            && part.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
            }))
}

fn covers(held: &str, asked: &str) -> bool {
    held == "*" || held == asked
}

impl FromStr for Permission {
    type Err = InvalidPermission;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Permission {
        Permission::parse(text).expect("valid permission")
    }

    #[test]
    fn wildcards_match_on_either_side_and_only_from_the_held_side() {
        let table = [
            // held, wanted, allowed
            ("*:*", "users:delete", true),
            ("users:*", "users:delete", true),
            ("users:*", "roles:delete", false),
            ("*:read", "audit:read", true),
            ("*:read", "audit:export", false),
            ("users:read", "users:read", true),
            ("users:read", "users:readx", false),
            ("users:read", "users:*", false),
            ("users:*", "users:*", true),
            ("*:read", "*:*", false),
            ("etl_jobs:execute", "etl_jobs:execute", true),
            ("dashboards:read", "dashboard:read", false),
        ];
        for (held, wanted, allowed) in table {
            assert_eq!(p(held).allows(&p(wanted)), allowed, "{held} vs {wanted}");
            assert_eq!(
                Permission::allowed_by_scope(&format!("x:y {held}"), &p(wanted)),
                allowed,
                "scope {held} vs {wanted}"
            );
        }
    }

    #[test]
    fn a_scope_grants_only_through_well_formed_entries() {
        let wanted = p("reports:write");
        for scope in [
            "",
            " ",
            "reports",
            "reports:write:x",
            "Reports:write",
            "*",
            "**:*",
        ] {
            assert!(
                !Permission::allowed_by_scope(scope, &wanted),
                "{scope:?} granted"
            );
        }
        assert!(Permission::allowed_by_scope("a:b  reports:write", &wanted));
    }

    #[test]
    fn only_well_formed_permissions_parse() {
        for good in [
            "a:b",
            "etl_jobs:execute",
            "audit:*",
            "*:*",
            "v1.flags:read-all",
        ] {
            assert_eq!(p(good).to_string(), good);
        }
        for bad in [
            "", ":", "a:", ":b", "a", "a:b:c", "A:b", "a b:c", "a:*x", "**:a", "é:a",
        ] {
            assert!(Permission::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Permission::parse(&format!("{}:read", "a".repeat(65))).is_err());
        let message = Permission::parse("a\nb").expect_err("invalid").to_string();
        assert!(
            message.starts_with("`a\\nb` is not a permission"),
            "{message}"
        );
    }
}
