//! axum integration: the [`Authenticated`] extractor, the [`Require`] permission guard, and
//! tower layers ([`AuthLayer`], [`RequirePermissionLayer`]) for whole routers. Refusals are
//! RFC 9457 problems with the same codes Tessera answers with.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use tower::{Layer, Service};

use crate::{AuthError, Authenticated, Verifier};

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "code": self.code(),
            "detail": self.to_string(),
        });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge() {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// Verifies the request, or uses what an [`AuthLayer`] already verified. The state must
/// give a [`Verifier`] (`FromRef`).
impl<S> FromRequestParts<S> for Authenticated
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(done) = parts.extensions.get::<Authenticated>() {
            return Ok(done.clone());
        }
        let verifier = Verifier::from_ref(state);
        let authenticated = verifier.authenticate(parts).await?;
        parts.extensions.insert(authenticated.clone());
        Ok(authenticated)
    }
}

/// A permission a handler requires, named by a type (see [`permission!`](crate::permission)).
pub trait PermissionName: Send + Sync + 'static {
    /// `resource:action`.
    const NAME: &'static str;
}

/// Declares a type for a permission, to use with [`Require`]:
/// `tessera_client::permission!(WriteReports = "reports:write");`
#[macro_export]
macro_rules! permission {
    ($(#[$meta:meta])* $vis:vis $name:ident = $permission:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;

        impl $crate::axum::PermissionName for $name {
            const NAME: &'static str = $permission;
        }
    };
}

/// An authenticated caller whose token grants `P`; 401 or 403 otherwise.
#[derive(Debug, Clone)]
pub struct Require<P: PermissionName>(pub Authenticated, pub PhantomData<P>);

impl<S, P> FromRequestParts<S> for Require<P>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
    P: PermissionName,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let authenticated = Authenticated::from_request_parts(parts, state).await?;
        authenticated.require(P::NAME)?;
        Ok(Self(authenticated, PhantomData))
    }
}

/// Authenticates every request of the services it wraps: verified callers reach them with
/// [`Authenticated`] in the request extensions; anyone else gets the 401 or 403.
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Verifier,
}

impl AuthLayer {
    /// A layer verifying with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            verifier: self.verifier.clone(),
            inner,
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Clone)]
pub struct AuthService<S> {
    verifier: Verifier,
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let verifier = self.verifier.clone();
        // The clone is the one polled ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            match verifier.authenticate(&parts).await {
                Ok(authenticated) => {
                    parts.extensions.insert(authenticated);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(error) => Ok(error.into_response()),
            }
        })
    }
}

/// Requires a permission of every request reaching the services it wraps. Put it inside an
/// [`AuthLayer`] (applied after it), which supplies the caller.
#[derive(Clone)]
pub struct RequirePermissionLayer {
    permission: &'static str,
}

impl RequirePermissionLayer {
    /// Requires `permission` (`resource:action`).
    pub fn new(permission: &'static str) -> Self {
        Self { permission }
    }
}

impl<S> Layer<S> for RequirePermissionLayer {
    type Service = RequirePermission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePermission {
            permission: self.permission,
            inner,
        }
    }
}

/// The service [`RequirePermissionLayer`] makes.
#[derive(Clone)]
pub struct RequirePermission<S> {
    permission: &'static str,
    inner: S,
}

impl<S, B> Service<Request<B>> for RequirePermission<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let allowed = match request.extensions().get::<Authenticated>() {
            Some(caller) => caller.require(self.permission),
            None => Err(AuthError::Missing),
        };
        match allowed {
            Ok(()) => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(request).await })
            }
            Err(error) => Box::pin(async move { Ok(error.into_response()) }),
        }
    }
}
