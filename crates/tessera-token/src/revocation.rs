//! The revocation feed's entries: what Tessera revoked, and which tokens that makes invalid.
//! The server writes them; every verifier that follows the feed applies them with
//! [`Revocation::covers`], so "is this token revoked" means the same everywhere.

use serde::{Deserialize, Serialize};

use crate::AccessClaims;

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The tenant of every token it covers.
    pub tid: String,
    /// What was revoked.
    #[serde(flatten)]
    pub target: Revoked,
    /// When (Unix seconds).
    pub revoked_at: i64,
    /// No token it covers is valid after this (Unix seconds, before any verifier leeway):
    /// from then on the entry can be forgotten.
    pub expires_at: i64,
}

/// What a [`Revocation`] revoked, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revoked {
    /// A session (logout, revoke, refresh-token reuse…): every token with this `sid`.
    Session {
        /// The session id.
        sid: String,
    },
    /// A subject (a disabled user or client): every token with this `sub` issued at or
    /// before `issued_before`.
    Subject {
        /// The user or client id.
        sub: String,
        /// Unix seconds.
        issued_before: i64,
    },
    /// One access token, by `jti` (RFC 7009 revocation).
    Token {
        /// The token id.
        jti: String,
    },
}

impl Revocation {
    /// Whether this revocation makes `claims` invalid.
    pub fn covers(&self, claims: &AccessClaims) -> bool {
        claims.tid == self.tid
            && match &self.target {
                Revoked::Session { sid } => claims.sid.as_deref() == Some(sid.as_str()),
                Revoked::Subject { sub, issued_before } => {
                    claims.sub == *sub && claims.iat <= *issued_before
                }
                Revoked::Token { jti } => claims.jti == *jti,
            }
    }
}

/// A page of `GET /api/v1/auth/revocations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationPage {
    /// Revocations still in force, oldest first. One may appear again on a later page: that
    /// changes nothing.
    pub items: Vec<Revocation>,
    /// Where to continue (`?after=`, or `Last-Event-ID` on the stream).
    pub cursor: String,
    /// Whether more can be read at once.
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Audience;

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "https://auth.example".into(),
            aud: Audience::one("platform"),
            sub: "u1".into(),
            client_id: "tessera".into(),
            sid: Some("s1".into()),
            tid: "t1".into(),
            roles: vec![],
            scope: String::new(),
            amr: vec![],
            auth_time: None,
            iat: 1_000,
            nbf: None,
            exp: 1_600,
            jti: "j1".into(),
        }
    }

    fn revocation(tid: &str, target: Revoked) -> Revocation {
        Revocation {
            tid: tid.into(),
            target,
            revoked_at: 1_100,
            expires_at: 1_700,
        }
    }

    #[test]
    fn each_kind_covers_exactly_its_tokens_in_its_tenant() {
        let session = |sid: &str| Revoked::Session { sid: sid.into() };
        let subject = |sub: &str, issued_before| Revoked::Subject {
            sub: sub.into(),
            issued_before,
        };
        let token = |jti: &str| Revoked::Token { jti: jti.into() };
        let table = [
            (revocation("t1", session("s1")), true),
            (revocation("t1", session("s2")), false),
            (revocation("t2", session("s1")), false),
            (revocation("t1", subject("u1", 1_000)), true),
            (revocation("t1", subject("u1", 999)), false),
            (revocation("t1", subject("u2", 2_000)), false),
            (revocation("t1", token("j1")), true),
            (revocation("t1", token("j2")), false),
            (revocation("t2", token("j1")), false),
        ];
        for (entry, covered) in table {
            assert_eq!(entry.covers(&claims()), covered, "{entry:?}");
        }
        let service = AccessClaims {
            sid: None,
            ..claims()
        };
        assert!(!revocation("t1", session("s1")).covers(&service));
    }

    #[test]
    fn the_wire_form_is_flat_and_tagged_by_kind() {
        let entry = revocation("t1", Revoked::Session { sid: "s1".into() });
        let json = serde_json::to_value(&entry).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "tid": "t1", "kind": "session", "sid": "s1",
                "revoked_at": 1_100, "expires_at": 1_700
            })
        );
        assert_eq!(
            serde_json::from_value::<Revocation>(json).expect("parses"),
            entry
        );
        let unknown = serde_json::json!({
            "tid": "t1", "kind": "galaxy", "revoked_at": 1, "expires_at": 2
        });
        assert!(serde_json::from_value::<Revocation>(unknown).is_err());
    }
}
