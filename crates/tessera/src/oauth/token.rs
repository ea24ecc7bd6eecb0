//! `POST /oauth2/token`: the client credentials grant (RFC 6749 §4.4) for service accounts,
//! authenticated with `client_secret_basic` or `client_secret_post`. Errors are RFC 6749 §5.2
//! JSON bodies (`invalid_client` with 401 and a `WWW-Authenticate` challenge, …), as every
//! OAuth client library expects, rather than problem+json.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use tessera_token::{AccessClaims, Audience, unix_now};

use crate::AppState;
use crate::clients;
use crate::rbac::Permission;

/// An RFC 6749 §5.2 error.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    /// Whether the client tried HTTP Basic authentication (then 401 names that scheme).
    basic: bool,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: &'static str) -> Self {
        Self {
            status,
            error,
            description,
            basic: false,
        }
    }

    fn invalid_request(description: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_client(basic: bool) -> Self {
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

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    error_description: &'static str,
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

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The form body; every parameter at most once (RFC 6749 §3.2).
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

#[derive(Serialize)]
struct TokenBody {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
}

/// The token endpoint.
pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match issue(&state, &headers, &body).await {
        Ok(body) => {
            let mut response = axum::Json(body).into_response();
            no_store(response.headers_mut());
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn issue(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenBody, OAuthError> {
    let mut fields = parse_form(headers, body)?;
    let (client_id, secret, basic) = credentials(headers, &mut fields)?;
    let client = clients::authenticate(state.db(), &client_id, &secret)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "client lookup failed");
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the server could not check the client",
            )
        })?
        .ok_or(OAuthError::invalid_client(basic))?;
    match fields.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only the client_credentials grant is supported",
            ));
        }
        None => return Err(OAuthError::invalid_request("grant_type is required")),
    }
    let allowed: Vec<Permission> = client
        .scopes
        .iter()
        .filter_map(|s| Permission::parse(s).ok())
        .collect();
    let scope = match fields
        .get("scope")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => client.scopes.join(" "),
        Some(requested) => {
            let mut granted = Vec::new();
            for text in requested.split(' ').filter(|s| !s.is_empty()) {
                let wanted = Permission::parse(text).map_err(|_| {
                    OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "a requested scope is malformed",
                    )
                })?;
                if !allowed.iter().any(|a| a.allows(&wanted)) {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "a requested scope is not allowed for this client",
                    ));
                }
                granted.push(wanted.to_string());
            }
            granted.sort();
            granted.dedup();
            granted.join(" ")
        }
    };
    let config = state.config();
    let now = unix_now();
    let ttl = i64::try_from(config.token.access_ttl_secs).unwrap_or(600);
    let claims = AccessClaims {
        iss: config.issuer(),
        aud: Audience::one(config.token.audience.clone()),
        sub: client.id.clone(),
        client_id: client.id,
        sid: None,
        tid: client.tenant_id,
        roles: Vec::new(),
        scope: scope.clone(),
        amr: Vec::new(),
        auth_time: None,
        iat: now,
        nbf: Some(now),
        exp: now + ttl,
        jti: uuid::Uuid::new_v4().simple().to_string(),
    };
    let access_token = state.keys().current().signer.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the server could not sign a token",
        )
    })?;
    Ok(TokenBody {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope,
    })
}
