//! The methods each route answers, read from the served OpenAPI document (which a test holds
//! equal to the router). Route layers (`Router::route_layer`) also wrap a route's own 405
//! answer, so without this a method the route does not answer would still take a resource's
//! lock, check its `If-Match` or claim an `Idempotency-Key` before being refused. [`layer`]
//! answers 405 first, so nothing behind it ever acts on an unanswered method.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiError;

/// Route template (as axum matches it, `{param}`) → the methods it answers, and the `Allow`
/// header a refusal carries.
#[derive(Clone, Default)]
pub struct Answered(Arc<HashMap<String, Route>>);

struct Route {
    methods: HashSet<Method>,
    allow: HeaderValue,
}

const METHODS: [(&str, Method); 7] = [
    ("get", Method::GET),
    ("put", Method::PUT),
    ("post", Method::POST),
    ("delete", Method::DELETE),
    ("patch", Method::PATCH),
    ("options", Method::OPTIONS),
    ("trace", Method::TRACE),
];

impl Answered {
    /// The operations of an OpenAPI document's `paths`. A `GET` route also answers `HEAD`.
    pub fn of(document: &Value) -> Self {
        let Some(paths) = document.get("paths").and_then(Value::as_object) else {
            return Self::default();
        };
        let routes = paths
            .iter()
            .map(|(path, item)| {
                let mut methods: HashSet<Method> = METHODS
                    .iter()
                    .filter(|(name, _)| item.get(*name).is_some())
                    .map(|(_, method)| method.clone())
                    .collect();
                if methods.contains(&Method::GET) {
                    methods.insert(Method::HEAD);
                }
                let mut names: Vec<&str> = methods.iter().map(Method::as_str).collect();
                names.sort_unstable();
                let allow = HeaderValue::from_str(&names.join(", "))
                    .unwrap_or_else(|_| HeaderValue::from_static(""));
                (path.clone(), Route { methods, allow })
            })
            .collect();
        Self(Arc::new(routes))
    }

    /// `Some(allow)` when the matched route is known and does not answer `method`. A route
    /// the document does not know (there is none, by the test) is left to the router.
    fn refusal(&self, path: &str, method: &Method) -> Option<&HeaderValue> {
        let route = self.0.get(path)?;
        (!route.methods.contains(method)).then_some(&route.allow)
    }
}

/// A route layer, outermost of the route layers: 405 `method_not_allowed` (with `Allow`) for
/// a method the matched route does not answer, before any other route layer runs.
pub async fn layer(State(answered): State<Answered>, request: Request, next: Next) -> Response {
    let refused = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| answered.refusal(path.as_str(), request.method()))
        .cloned();
    match refused {
        Some(allow) => {
            let mut response = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not answer that method (see the Allow header)",
            )
            .into_response();
            response.headers_mut().insert(header::ALLOW, allow);
            response
        }
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_route_answers_its_documented_methods_and_head_with_get() {
        let answered = Answered::of(&json!({"paths": {
            "/api/v1/admin/flags/{key}": {"get": {}, "patch": {}, "delete": {}, "parameters": []},
            "/api/v1/status/events": {"post": {}},
        }}));
        let flag = "/api/v1/admin/flags/{key}";
        assert!(answered.refusal(flag, &Method::GET).is_none());
        assert!(answered.refusal(flag, &Method::HEAD).is_none());
        assert!(answered.refusal(flag, &Method::PATCH).is_none());
        assert_eq!(
            answered
                .refusal(flag, &Method::POST)
                .map(HeaderValue::as_bytes),
            Some(&b"DELETE, GET, HEAD, PATCH"[..])
        );
        assert_eq!(
            answered
                .refusal("/api/v1/status/events", &Method::GET)
                .map(HeaderValue::as_bytes),
            Some(&b"POST"[..])
        );
        assert!(answered.refusal("/unknown", &Method::POST).is_none());
    }
}
