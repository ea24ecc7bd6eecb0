//! The conventions every route's answers follow, as layers over the whole router rather than
//! code in each handler:
//!
//! - **ETag on every JSON GET** ([`layer`]): a strong tag over the exact body, and
//!   `If-None-Match` naming it → `304 Not Modified`. Routes that tag their own answers (the
//!   JWKS, OFREP, platform config) keep theirs.
//! - **`Link` on every list** (RFC 8288): any answer shaped `{items, page, page_size, pages}`
//!   gets `first`, `prev`, `next` and `last`, keeping the request's other query parameters.
//!   A keyset list's `next` resumes from its `next_cursor`; `last` is left out while its total
//!   is an estimate.
//! - **A deliberate `Cache-Control`** ([`cache_policy`]): `no-store` on every answer to a
//!   state-changing request (they show secrets once: client secrets, TOTP secrets, tokens)
//!   and on anything not named; `private, no-cache` on what a caller reads about its own or
//!   its tenant's resources (kept, but revalidated with the ETag each time); the public
//!   status page may be cached briefly by anyone. A route's own header always wins.
//! - **`If-Match` on administrative resources** ([`if_match`]): PATCH and DELETE of
//!   `/api/v1/admin/<collection>/<id>` (and any write under it, such as a flag's tenant
//!   override) compare the tag with the resource's current one and answer 412
//!   `precondition_failed` when it changed (a lost update between two
//!   administrators is refused). Every write to one resource holds a lock row meanwhile, so
//!   the check and the write it guards cannot interleave with another writer.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tower::ServiceExt as _;

use super::client::ClientIp;
use super::error::ApiError;
use super::etag;
use super::request_id::RequestId;
use crate::clock::Clock;
use crate::db::Db;
use crate::digest::sha256_hex;

/// Largest body tagged; larger answers go out untagged.
const MAX_TAGGED_BYTES: usize = 8 * 1024 * 1024;

/// `Cache-Control` of GET answers by path (exact, or every path under one ending in `/`),
/// first match wins; anything unnamed is `no-store`.
const GET_POLICIES: &[(&str, &str)] = &[
    // The public status page: the same for everyone, fine to cache for a few seconds.
    ("/api/v1/status", "public, max-age=10"),
    // A caller's own sessions, and administrators' views: no secrets (those are
    // shown once, by the writes), but about someone, so only the caller's own cache keeps
    // them, revalidating with the ETag.
    ("/api/v1/admin/", "private, no-cache"),
    ("/api/v1/audit", "private, no-cache"),
    ("/api/v1/auth/sessions", "private, no-cache"),
    ("/api/v1/auth/sessions/", "private, no-cache"),
];

/// The `Cache-Control` a route's answer gets when the route set none: see the module docs.
pub fn cache_policy(method: &Method, path: &str) -> &'static str {
    if !(method == Method::GET || method == Method::HEAD) {
        return "no-store";
    }
    GET_POLICIES
        .iter()
        .find(|(prefix, _)| {
            if prefix.ends_with('/') {
                path.starts_with(prefix)
            } else {
                path == *prefix
            }
        })
        .map_or("no-store", |(_, policy)| policy)
}

/// A strong ETag over `body`.
pub fn tag_of(body: &[u8]) -> HeaderValue {
    let digest = sha256_hex(body);
    HeaderValue::from_str(&format!("\"{}\"", &digest[..32])).expect("hex is a valid header")
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/json"))
}

/// The layer for answers: ETag, `If-None-Match`, `Link` and `Cache-Control` (module docs).
pub async fn layer(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let conditions = request.headers().clone();
    let mut response = next.run(request).await;
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        let policy = cache_policy(&method, uri.path());
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    let readable = method == Method::GET || method == Method::HEAD;
    if !readable
        || response.status() != StatusCode::OK
        || !is_json(response.headers())
        || response.headers().contains_key(header::ETAG)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_TAGGED_BYTES).await else {
        return ApiError::internal("an answer was too large to tag").into_response();
    };
    let tag = tag_of(&bytes);
    if let Some(value) = links(&uri, &bytes).and_then(|l| HeaderValue::from_str(&l).ok()) {
        parts.headers.insert(header::LINK, value);
    }
    parts.headers.insert(header::ETAG, tag.clone());
    if etag::matches(&conditions, &tag) {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The `Link` header of a list page, or `None` when `body` is not one.
fn links(uri: &http::Uri, body: &Bytes) -> Option<String> {
    let page: Value = serde_json::from_slice(body).ok()?;
    page.get("items")?.as_array()?;
    let page_size = page.get("page_size")?.as_u64()?;
    let pages = page.get("pages")?.as_u64()?;
    let current = page.get("page").and_then(Value::as_u64);
    let estimate = page
        .get("total_is_estimate")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let cursor = page.get("next_cursor").and_then(Value::as_str);
    // The request's own parameters, less the paging ones each link sets.
    let kept: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(name, _)| !matches!(name.as_ref(), "page" | "page_size" | "after"))
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    let target = |extra: &[(&str, String)]| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &kept {
            query.append_pair(name, value);
        }
        for (name, value) in extra {
            query.append_pair(name, value);
        }
        query.append_pair("page_size", &page_size.to_string());
        format!("<{}?{}>", uri.path(), query.finish())
    };
    let numbered = |n: u64| target(&[("page", n.to_string())]);
    let mut out = vec![format!("{}; rel=\"first\"", numbered(1))];
    if let Some(current) = current.filter(|c| *c > 1) {
        out.push(format!(
            "{}; rel=\"prev\"",
            numbered((current - 1).min(pages.max(1)))
        ));
    }
    match (cursor, current) {
        (Some(cursor), _) => out.push(format!(
            "{}; rel=\"next\"",
            target(&[("after", cursor.to_owned())])
        )),
        (None, Some(current)) if current < pages => {
            out.push(format!("{}; rel=\"next\"", numbered(current + 1)));
        }
        _ => {}
    }
    if !estimate {
        out.push(format!("{}; rel=\"last\"", numbered(pages.max(1))));
    }
    Some(out.join(", "))
}

/// What [`if_match`] needs: the routes (to read a resource's current representation) and
/// the database (for the lock rows).
#[derive(Clone)]
pub struct Preconditions {
    /// Every route, without these layers.
    pub routes: Router,
    /// Where the lock rows live.
    pub db: Db,
    /// The time locks are taken at.
    pub clock: Clock,
    /// A lock older than this was left by a request that died, in seconds.
    pub stale_secs: i64,
}

/// `/api/v1/admin/<collection>/<id>` of a path at or under an administrative resource.
pub(crate) fn admin_resource(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/v1/admin/")?;
    let mut segments = rest.splitn(3, '/');
    let collection = segments.next().filter(|s| !s.is_empty())?;
    let id = segments.next().filter(|s| !s.is_empty())?;
    Some(&path[.."/api/v1/admin/".len() + collection.len() + 1 + id.len()])
}

/// How long a writer waits for another writer of the same resource before 409.
const LOCK_WAIT: Duration = Duration::from_secs(5);
const LOCK_POLL: Duration = Duration::from_millis(20);

/// The layer for writes to administrative resources: the lock, and `If-Match` (module docs).
pub async fn if_match(State(pre): State<Preconditions>, request: Request, next: Next) -> Response {
    if request.method().is_safe() {
        return next.run(request).await;
    }
    let Some(resource) = admin_resource(request.uri().path()).map(str::to_owned) else {
        return next.run(request).await;
    };
    let guarded = request.headers().contains_key(header::IF_MATCH);
    let claimed = match lock(&pre, &resource).await {
        Ok(Some(claimed)) => claimed,
        Ok(None) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "resource_busy",
                "another change to this resource is in progress; retry",
            )
            .retry_after(1)
            .into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let response = if guarded {
        let (read, wanted) = current_read(&resource, &request);
        match precondition(&pre, read, wanted).await {
            Ok(()) => next.run(request).await,
            Err(refused) => refused.into_response(),
        }
    } else {
        next.run(request).await
    };
    if let Err(e) = unlock(&pre.db, &resource, claimed).await {
        tracing::warn!(error = %e, "could not release a resource lock");
    }
    response
}

/// Succeeds when the request's `If-Match` names the resource's current tag (strong
/// comparison; `*` matches any current representation). 412 `precondition_failed`
/// otherwise: when the resource is gone, and when the caller may not read it (a tag it could
/// never have seen cannot be current; the read refuses before looking the resource up, so
/// this tells nothing of its existence). An unauthenticated write gets its own 401.
async fn precondition(
    pre: &Preconditions,
    read: Request,
    wanted: Vec<HeaderValue>,
) -> Result<(), ApiError> {
    let current = pre
        .routes
        .clone()
        .oneshot(read)
        .await
        .map_err(ApiError::internal)?;
    let stale = || {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "the resource changed since you read it (If-Match names an older ETag); read it \
             again and reapply your change",
        )
    };
    let tag = match current.status() {
        StatusCode::OK => match current.headers().get(header::ETAG).cloned() {
            Some(tag) => tag,
            None => {
                let bytes = to_bytes(current.into_body(), MAX_TAGGED_BYTES)
                    .await
                    .map_err(ApiError::internal)?;
                tag_of(&bytes)
            }
        },
        StatusCode::UNAUTHORIZED => return Ok(()),
        _ => return Err(stale()),
    };
    let matched = wanted.iter().any(|value| {
        value
            .as_bytes()
            .split(|b| *b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|t| t == b"*" || (!t.starts_with(b"W/") && t == tag.as_bytes()))
    });
    if matched { Ok(()) } else { Err(stale()) }
}

/// The read of `resource` as the writer would see it (its credentials and request
/// extensions), and the tags its `If-Match` names.
fn current_read(resource: &str, request: &Request) -> (Request, Vec<HeaderValue>) {
    let mut read = Request::new(Body::empty());
    *read.uri_mut() = http::Uri::try_from(resource).unwrap_or_default();
    // Where the request came from (for the read's own checks), never its routing state.
    let from = request.extensions();
    let into = read.extensions_mut();
    if let Some(ip) = from.get::<ClientIp>() {
        into.insert(*ip);
    }
    if let Some(id) = from.get::<RequestId>() {
        into.insert(id.clone());
    }
    if let Some(peer) = from.get::<ConnectInfo<SocketAddr>>() {
        into.insert(*peer);
    }
    for name in [header::AUTHORIZATION, header::COOKIE] {
        if let Some(value) = request.headers().get(&name) {
            read.headers_mut().insert(name, value.clone());
        }
    }
    let wanted = request
        .headers()
        .get_all(header::IF_MATCH)
        .iter()
        .cloned()
        .collect();
    (read, wanted)
}

/// Takes the lock row of `resource`, waiting up to [`LOCK_WAIT`] for another writer; a lock
/// older than `stale_secs` is taken over. Returns the time it was taken at (which
/// [`unlock`] names), or `None` when it stayed busy.
async fn lock(pre: &Preconditions, resource: &str) -> Result<Option<i64>, sqlx::Error> {
    let waited = tokio::time::Instant::now();
    loop {
        let now = pre.clock.now();
        let taken = sqlx::query(
            "INSERT INTO resource_locks (resource, locked_at) VALUES ($1, $2) \
             ON CONFLICT (resource) DO UPDATE SET locked_at = excluded.locked_at \
             WHERE resource_locks.locked_at < $3",
        )
        .bind(resource)
        .bind(now)
        .bind(now - pre.stale_secs)
        .execute(pre.db.pool())
        .await?
        .rows_affected();
        if taken == 1 {
            return Ok(Some(now));
        }
        if waited.elapsed() >= LOCK_WAIT {
            return Ok(None);
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
}

async fn unlock(db: &Db, resource: &str, claimed: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM resource_locks WHERE resource = $1 AND locked_at = $2")
        .bind(resource)
        .bind(claimed)
        .execute(db.pool())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_resources_are_the_first_two_segments_under_admin() {
        assert_eq!(
            admin_resource("/api/v1/admin/users/u1"),
            Some("/api/v1/admin/users/u1")
        );
        assert_eq!(
            admin_resource("/api/v1/admin/users/u1/password"),
            Some("/api/v1/admin/users/u1")
        );
        assert_eq!(admin_resource("/api/v1/admin/users"), None);
        assert_eq!(admin_resource("/api/v1/admin/users/"), None);
        assert_eq!(admin_resource("/api/v1/auth/me"), None);
    }

    #[test]
    fn pages_link_to_their_neighbours_keeping_filters() {
        let uri: http::Uri = "/api/v1/admin/users?q=ann&page=2&page_size=10"
            .parse()
            .expect("uri");
        let body =
            Bytes::from_static(br#"{"items":[],"total":35,"page":2,"page_size":10,"pages":4}"#);
        let found = links(&uri, &body).expect("a list");
        assert_eq!(
            found,
            "</api/v1/admin/users?q=ann&page=1&page_size=10>; rel=\"first\", \
             </api/v1/admin/users?q=ann&page=1&page_size=10>; rel=\"prev\", \
             </api/v1/admin/users?q=ann&page=3&page_size=10>; rel=\"next\", \
             </api/v1/admin/users?q=ann&page=4&page_size=10>; rel=\"last\""
        );
        let last =
            Bytes::from_static(br#"{"items":[],"total":35,"page":4,"page_size":10,"pages":4}"#);
        assert!(!links(&uri, &last).expect("a list").contains("rel=\"next\""));
        let other = Bytes::from_static(br#"{"id":"u1"}"#);
        assert!(links(&uri, &other).is_none());
    }

    #[test]
    fn writes_are_never_stored_and_reads_are_named() {
        assert_eq!(
            cache_policy(&Method::POST, "/api/v1/admin/clients"),
            "no-store"
        );
        assert_eq!(
            cache_policy(&Method::GET, "/api/v1/admin/clients"),
            "private, no-cache"
        );
        assert_eq!(
            cache_policy(&Method::GET, "/api/v1/status"),
            "public, max-age=10"
        );
        assert_eq!(cache_policy(&Method::GET, "/api/v1/unknown"), "no-store");
    }
}
