//! Client authentication for the OAuth endpoints (token, introspection, revocation):
//! `client_secret_basic` or `client_secret_post`, never both, from an
//! `application/x-www-form-urlencoded` body, and the RFC 6749 §5.2 error they answer with.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::clients::Client;
use crate::http::ApiError;
use crate::permissions::Perm;
use crate::rbac::Permission;
use crate::state::AppState;

/// An RFC 6749 §5.2 error.
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    /// Whether the client tried HTTP Basic authentication (then 401 names that scheme).
    basic: bool,
}

impl OAuthError {
    /// An error with its status, RFC 6749 code and description.
    pub fn new(status: StatusCode, error: &'static str, description: &'static str) -> Self {
        Self {
            status,
            error,
            description,
            basic: false,
        }
    }

    /// `invalid_request` (400).
    pub fn invalid_request(description: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// `invalid_client` (401 with a Basic challenge).
    pub fn invalid_client(basic: bool) -> Self {
        Self {
            basic,
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            )
        }
    }
}

/// The body of an [`OAuthError`].
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = OAuthError)]
pub struct ErrorBody {
    error: &'static str,
    error_description: &'static str,
}

impl From<OAuthError> for ApiError {
    /// The same error as a problem, for endpoints outside `/oauth2`.
    fn from(error: OAuthError) -> Self {
        if error.status == StatusCode::UNAUTHORIZED {
            ApiError::client_unauthorized(error.description)
        } else {
            ApiError::new(error.status, error.error, error.description)
        }
    }
}

impl From<OAuthError> for Response {
    fn from(error: OAuthError) -> Self {
        error.into_response()
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(ErrorBody {
                error: self.error,
                error_description: self.description,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        no_store(headers);
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = if self.basic {
                "Basic realm=\"tessera\""
            } else {
                "Basic realm=\"tessera\", error=\"invalid_client\""
            };
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// Token responses and errors are never stored on the way.
pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The parameters the OAuth endpoints read. RFC 6749 §3.1: each at most once; any other is
/// ignored, however often it comes.
const PARAMETERS: &[&str] = &[
    "grant_type",
    "scope",
    "client_id",
    "client_secret",
    "token",
    "token_type_hint",
];

/// The form body; every parameter the endpoints read at most once (RFC 6749 §3.1).
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut fields = HashMap::new();
    for (key, value) in form_urlencoded::parse(body) {
        if !PARAMETERS.contains(&key.as_ref()) {
            continue;
        }
        if fields
            .insert(key.into_owned(), value.into_owned())
            .is_some()
        {
            return Err(OAuthError::invalid_request(
                "a parameter was sent more than once",
            ));
        }
    }
    Ok(fields)
}

/// `client_id` and `client_secret` from HTTP Basic (each part form-urlencoded, RFC 6749
/// §2.3.1) or from the body; using both at once is refused.
fn credentials(
    headers: &HeaderMap,
    fields: &mut HashMap<String, String>,
) -> Result<(String, String, bool), OAuthError> {
    let in_body = (fields.remove("client_id"), fields.remove("client_secret"));
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        return match in_body {
            (Some(id), Some(secret)) => Ok((id, secret, false)),
            _ => Err(OAuthError::invalid_client(false)),
        };
    };
    if in_body.0.is_some() || in_body.1.is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method, not two",
        ));
    }
    let decoded = authorization
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| STANDARD.decode(b64.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(OAuthError::invalid_client(true))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or(OAuthError::invalid_client(true))?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok((unescape(id), unescape(secret), true))
}

/// The authenticated active client and the rest of the form, or the error to answer.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Client, HashMap<String, String>), OAuthError> {
    let mut fields = parse_form(headers, body)?;
    let (client_id, secret, basic) = credentials(headers, &mut fields)?;
    let client = find(state, &client_id, &secret, basic).await?;
    Ok((client, fields))
}

/// The active client authenticated by `client_secret_basic`, for requests without a form
/// (the revocation feed).
pub async fn authenticate_basic(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Client, OAuthError> {
    let (client_id, secret, basic) = credentials(headers, &mut HashMap::new())?;
    find(state, &client_id, &secret, basic).await
}

async fn find(
    state: &AppState,
    client_id: &str,
    secret: &str,
    basic: bool,
) -> Result<Client, OAuthError> {
    state
        .clients()
        .authenticate(state.db(), client_id, secret)
        .await
        .map_err(|e| {
            // A client id no database can hold (a NUL character) names no client.
            if crate::http::error::is_unstorable_input(&e) {
                return OAuthError::invalid_client(basic);
            }
            tracing::error!(error = %e, "client lookup failed");
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the server could not check the client",
            )
        })?
        .ok_or(OAuthError::invalid_client(basic))
}

/// Succeeds when one of `client`'s allowed scopes covers `wanted` (a valid permission).
pub fn require_scope(client: &Client, wanted: Perm) -> Result<(), OAuthError> {
    let allowed = wanted.permission().is_ok_and(|wanted| {
        client
            .scopes
            .iter()
            .filter_map(|s| Permission::parse(s).ok())
            .any(|s| s.allows(&wanted))
    });
    if allowed {
        Ok(())
    } else {
        Err(OAuthError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "this client is not allowed the scope this endpoint needs",
        ))
    }
}
