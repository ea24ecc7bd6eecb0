//! The revocation feed's entries: what Tessera revoked, and which tokens that makes invalid.
//! The server writes them; every verifier that follows the feed applies them with
//! [`Revocation::covers`], through a [`RevocationSet`], and so does the server's own
//! introspection, so "is this token revoked" means the same everywhere.

use std::collections::HashMap;

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
    /// A whole tenant (disabled): every token with this `tid` issued at or before
    /// `issued_before`, users' and service accounts' alike. Tokens issued after it (the
    /// tenant enabled again) are not covered.
    Tenant {
        /// Unix seconds.
        issued_before: i64,
    },
}

impl Revocation {
    /// The last `iat` a subject or tenant entry covers; `None` for the other kinds.
    pub fn issued_before(&self) -> Option<i64> {
        match self.target {
            Revoked::Subject { issued_before, .. } | Revoked::Tenant { issued_before } => {
                Some(issued_before)
            }
            Revoked::Session { .. } | Revoked::Token { .. } => None,
        }
    }

    /// Whether this revocation makes `claims` invalid.
    pub fn covers(&self, claims: &AccessClaims) -> bool {
        claims.tid == self.tid
            && match &self.target {
                Revoked::Session { sid } => claims.sid.as_deref() == Some(sid.as_str()),
                Revoked::Subject { sub, issued_before } => {
                    claims.sub == *sub && claims.iat <= *issued_before
                }
                Revoked::Token { jti } => claims.jti == *jti,
                Revoked::Tenant { issued_before } => claims.iat <= *issued_before,
            }
    }
}

/// Revocations held in memory, found by what they name: a token is looked up by its `sid`,
/// `sub`, `jti` and `tid`, and the entries found decide with [`Revocation::covers`]. The one
/// index of the feed, used by `tessera-client`'s verifiers and by the server itself.
#[derive(Debug, Default)]
pub struct RevocationSet {
    by_key: HashMap<String, Vec<Revocation>>,
    len: usize,
    /// Size after the last pruning; the next one waits until it doubled.
    pruned_at: usize,
}

/// Where an entry is filed: the one claim of a token that finds it.
fn key(prefix: &str, id: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + id.len());
    key.push_str(prefix);
    key.push_str(id);
    key
}

impl RevocationSet {
    fn key_of(entry: &Revocation) -> String {
        match &entry.target {
            Revoked::Session { sid } => key("s:", sid),
            Revoked::Subject { sub, .. } => key("u:", sub),
            Revoked::Token { jti } => key("t:", jti),
            Revoked::Tenant { .. } => key("n:", &entry.tid),
        }
    }

    /// Adds an entry (again: a duplicate changes nothing), unless it ended more than
    /// `leeway` seconds before `now`.
    pub fn insert(&mut self, entry: Revocation, now: i64, leeway: i64) {
        if entry.expires_at.saturating_add(leeway) < now {
            return;
        }
        let list = self.by_key.entry(Self::key_of(&entry)).or_default();
        if !list.contains(&entry) {
            list.push(entry);
            self.len += 1;
        }
        if self.len >= 1_024 && self.len >= self.pruned_at * 2 {
            self.prune(now, leeway);
        }
    }

    /// Forgets entries no token can outlive (`leeway` seconds past their end).
    pub fn prune(&mut self, now: i64, leeway: i64) {
        self.by_key.retain(|_, list| {
            list.retain(|e| e.expires_at.saturating_add(leeway) >= now);
            !list.is_empty()
        });
        self.len = self.by_key.values().map(Vec::len).sum();
        self.pruned_at = self.len;
    }

    /// Whether an entry revokes `claims`.
    pub fn covers(&self, claims: &AccessClaims) -> bool {
        if self.len == 0 {
            return false;
        }
        // One buffer for the four lookups: this runs on every verified request.
        let mut buffer = String::with_capacity(64);
        let mut hit = |prefix: &str, id: &str| {
            buffer.clear();
            buffer.push_str(prefix);
            buffer.push_str(id);
            self.by_key
                .get(buffer.as_str())
                .is_some_and(|list| list.iter().any(|e| e.covers(claims)))
        };
        claims.sid.as_deref().is_some_and(|sid| hit("s:", sid))
            || hit("u:", &claims.sub)
            || hit("t:", &claims.jti)
            || hit("n:", &claims.tid)
    }

    /// When the newest entry revoking all of tenant `tid`, or all of subject `sub` in it,
    /// was written (Unix seconds): what was read about them before then may be stale.
    pub fn last_revoked(&self, tid: &str, sub: &str) -> Option<i64> {
        let tenant = self.by_key.get(key("n:", tid).as_str());
        let subject = self.by_key.get(key("u:", sub).as_str());
        tenant
            .into_iter()
            .chain(subject)
            .flatten()
            .filter(|e| e.tid == tid)
            .map(|e| e.revoked_at)
            .max()
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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
        let tenant = |issued_before| Revoked::Tenant { issued_before };
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
            (revocation("t1", tenant(1_000)), true),
            (revocation("t1", tenant(999)), false),
            (revocation("t2", tenant(2_000)), false),
        ];
        for (entry, covered) in table {
            assert_eq!(entry.covers(&claims()), covered, "{entry:?}");
        }
        let service = AccessClaims {
            sid: None,
            ..claims()
        };
        assert!(!revocation("t1", session("s1")).covers(&service));
        assert!(revocation("t1", tenant(1_000)).covers(&service));
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
        let tenant = revocation(
            "t1",
            Revoked::Tenant {
                issued_before: 1_050,
            },
        );
        let json = serde_json::to_value(&tenant).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "tid": "t1", "kind": "tenant", "issued_before": 1_050,
                "revoked_at": 1_100, "expires_at": 1_700
            })
        );
        assert_eq!(
            serde_json::from_value::<Revocation>(json).expect("parses"),
            tenant
        );
        let unknown = serde_json::json!({
            "tid": "t1", "kind": "galaxy", "revoked_at": 1, "expires_at": 2
        });
        assert!(serde_json::from_value::<Revocation>(unknown).is_err());
    }

    #[test]
    fn a_set_finds_tokens_by_session_subject_id_or_tenant() {
        for target in [
            Revoked::Session { sid: "s1".into() },
            Revoked::Subject {
                sub: "u1".into(),
                issued_before: 1_000,
            },
            Revoked::Token { jti: "j1".into() },
            Revoked::Tenant {
                issued_before: 1_000,
            },
        ] {
            let mut set = RevocationSet::default();
            assert!(!set.covers(&claims()));
            set.insert(revocation("t1", target.clone()), 1_500, 30);
            assert!(set.covers(&claims()), "{target:?}");
            set.insert(revocation("t1", target.clone()), 1_500, 30);
            assert_eq!(set.len(), 1, "duplicates are held once");
            let other_tenant = AccessClaims {
                tid: "t2".into(),
                ..claims()
            };
            assert!(!set.covers(&other_tenant), "{target:?}");
        }
        let mut set = RevocationSet::default();
        set.insert(
            revocation("t1", Revoked::Session { sid: "s2".into() }),
            1_500,
            30,
        );
        let before = |issued_before| Revoked::Subject {
            sub: "u1".into(),
            issued_before,
        };
        set.insert(revocation("t1", before(999)), 1_500, 30);
        set.insert(
            revocation("t1", Revoked::Tenant { issued_before: 999 }),
            1_500,
            30,
        );
        assert!(
            !set.covers(&claims()),
            "tokens issued after an entry are not covered"
        );
    }

    #[test]
    fn a_set_tells_when_a_tenant_or_subject_was_last_revoked() {
        let mut set = RevocationSet::default();
        assert_eq!(set.last_revoked("t1", "u1"), None);
        set.insert(
            revocation("t1", Revoked::Token { jti: "u1".into() }),
            1_500,
            30,
        );
        assert_eq!(
            set.last_revoked("t1", "u1"),
            None,
            "a token names no subject"
        );
        let mut tenant = revocation("t1", Revoked::Tenant { issued_before: 1 });
        tenant.revoked_at = 1_200;
        set.insert(tenant, 1_500, 30);
        let subject = revocation(
            "t1",
            Revoked::Subject {
                sub: "u1".into(),
                issued_before: 1,
            },
        );
        set.insert(subject, 1_500, 30);
        assert_eq!(set.last_revoked("t1", "u1"), Some(1_200));
        assert_eq!(set.last_revoked("t1", "u2"), Some(1_200));
        assert_eq!(set.last_revoked("t2", "u1"), None);
    }

    #[test]
    fn a_set_keeps_entries_through_the_leeway_and_then_forgets_them() {
        let mut set = RevocationSet::default();
        let entry = || {
            let mut e = revocation("t1", Revoked::Token { jti: "j1".into() });
            e.expires_at = 1_600;
            e
        };
        set.insert(entry(), 1_500, 30);
        set.prune(1_630, 30);
        assert!(set.covers(&claims()));
        set.prune(1_631, 30);
        assert!(set.is_empty());
        set.insert(entry(), 1_700, 30);
        assert!(set.is_empty(), "an entry already past is not added");
    }
}
