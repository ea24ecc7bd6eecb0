//! Opaque cursors for keyset lists: the position of a page's last item, sealed with an HMAC
//! (under a key derived from the master key) over that position *and* the list, the caller's
//! tenant and the filter it was issued for. A cursor is therefore only good for the list, the
//! tenant and the query that produced it: one altered, forged or carried to another tenant or
//! another search is a 422 `invalid_cursor`, never a read of rows the caller could not reach
//! anyway (every list query filters by the caller's tenant besides).

use aws_lc_rs::hmac;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::master::MasterKey;

/// What a cursor is bound to besides its position.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Which list (`users`, `audit`).
    pub list: &'static str,
    /// The caller's tenant.
    pub tenant_id: &'a str,
    /// The list's filter in a canonical text form (the search text, the audit filters).
    pub filter: &'a str,
}

/// Seals and opens cursors.
pub struct Cursors {
    key: hmac::Key,
}

fn invalid() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_cursor",
        "`after` is not a cursor this list gave for this query",
    )
}

impl Cursors {
    /// The cursor key of this deployment.
    pub fn new(master: &MasterKey) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &master.derive("tessera list cursor v1")),
        }
    }

    /// Each part length-prefixed, so that no two scopes and positions sign the same bytes.
    fn tag(&self, scope: &Scope<'_>, position: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        for part in [
            scope.list.as_bytes(),
            scope.tenant_id.as_bytes(),
            scope.filter.as_bytes(),
            position,
        ] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        context.sign()
    }

    /// The cursor of `position` in `scope`.
    pub fn seal<P: Serialize>(&self, scope: &Scope<'_>, position: &P) -> String {
        let position = serde_json::to_vec(position).unwrap_or_default();
        let tag = self.tag(scope, &position);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&position),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The position `cursor` holds, if this server sealed it for exactly `scope`.
    pub fn open<P: DeserializeOwned>(
        &self,
        scope: &Scope<'_>,
        cursor: &str,
    ) -> Result<P, ApiError> {
        let (position, tag) = cursor.split_once('.').ok_or_else(invalid)?;
        let position = URL_SAFE_NO_PAD.decode(position).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        let expected = self.tag(scope, &position);
        // Constant time: a cursor is no oracle for its own tag.
        if aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_ref(), &tag).is_err() {
            return Err(invalid());
        }
        serde_json::from_slice(&position).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursors() -> Cursors {
        Cursors {
            key: hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]),
        }
    }

    const SCOPE: Scope<'static> = Scope {
        list: "users",
        tenant_id: "t1",
        filter: "ada",
    };

    #[test]
    fn a_cursor_opens_only_in_its_own_scope() {
        let cursors = cursors();
        let cursor = cursors.seal(&SCOPE, &("ada@example.com",));
        let (email,): (String,) = cursors.open(&SCOPE, &cursor).expect("opens");
        assert_eq!(email, "ada@example.com");
        for other in [
            Scope {
                tenant_id: "t2",
                ..SCOPE
            },
            Scope {
                filter: "ad",
                ..SCOPE
            },
            Scope {
                list: "audit",
                ..SCOPE
            },
        ] {
            assert!(
                cursors.open::<(String,)>(&other, &cursor).is_err(),
                "{other:?}"
            );
        }
    }

    #[test]
    fn altered_or_malformed_cursors_are_refused() {
        let cursors = cursors();
        let cursor = cursors.seal(&SCOPE, &("ada@example.com",));
        let (position, tag) = cursor.split_once('.').expect("two parts");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(br#"["zz@example.com"]"#));
        for bad in [
            forged.as_str(),
            position,
            "",
            ".",
            "not base64!.x",
            &format!("{position}.{}", &tag[1..]),
        ] {
            assert!(cursors.open::<(String,)>(&SCOPE, bad).is_err(), "{bad:?}");
        }
        // A genuine cursor whose position has another shape is refused, not a panic.
        let other_shape = cursors.seal(&SCOPE, &(1_i64, "id"));
        assert!(cursors.open::<(String,)>(&SCOPE, &other_shape).is_err());
    }
}
