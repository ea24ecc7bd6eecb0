//! HTTP reads from Tessera: bounded in size and time, credentials never logged.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;

/// Longest metadata, JWKS, feed page or introspection answer read.
pub(crate) const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How long one request may take, except the revocation stream.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client id and secret, sent as `client_secret_basic`.
#[derive(Clone)]
pub(crate) struct ClientCredentials {
    header: String,
}

impl ClientCredentials {
    pub fn new(id: &str, secret: &str) -> Self {
        // RFC 6749 §2.3.1: each part form-urlencoded before joining.
        let pair = format!("{}:{}", form_component(id), form_component(secret));
        Self {
            header: format!("Basic {}", STANDARD.encode(pair)),
        }
    }

    pub fn header(&self) -> &str {
        &self.header
    }
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientCredentials([redacted])")
    }
}

/// `text` as one `application/x-www-form-urlencoded` component.
pub(crate) fn form_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Reads at most [`MAX_BODY_BYTES`] of `response`'s body.
pub(crate) async fn body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|l| l > MAX_BODY_BYTES as u64)
    {
        return Err("response too large".to_owned());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err("response too large".to_owned());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// GETs `url` (with `credentials` when given) and parses the JSON answer; any other status
/// than 200 is an error naming it.
pub(crate) async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    credentials: Option<&ClientCredentials>,
) -> Result<T, String> {
    let mut request = http.get(url).timeout(REQUEST_TIMEOUT);
    if let Some(credentials) = credentials {
        request = request.header(http::header::AUTHORIZATION, credentials.header());
    }
    let response = request
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("{url} answered {status}"));
    }
    let bytes = body(response).await?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{url} answered unreadable JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_then_base64() {
        let credentials = ClientCredentials::new("id 1", "s:é");
        let encoded = credentials.header().strip_prefix("Basic ").expect("Basic");
        let decoded = STANDARD.decode(encoded).expect("base64");
        assert_eq!(decoded, b"id+1:s%3A%C3%A9");
        assert_eq!(format!("{credentials:?}"), "ClientCredentials([redacted])");
    }
}
