//! The JSON body extractor every handler uses: axum's, with each rejection turned into a
//! problem+json answer (400 malformed, 413 too large, 415 wrong media type, 422 wrong shape).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body, or a JSON response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection_to_problem(&rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn rejection_to_problem(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            // serde's message names the field and what it expected; it never echoes values.
            e.body_text(),
        ),
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the request body is not valid JSON",
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected `Content-Type: application/json`",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than this server accepts",
        ),
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the request body could not be read: {}", other.body_text()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::{Body, to_bytes};
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    use serde::Deserialize;
    use tower::ServiceExt;

    #[derive(Deserialize)]
    struct Input {
        #[allow(dead_code)]
        name: String,
    }

    async fn send(content_type: Option<&str>, body: impl Into<Body>) -> (u16, serde_json::Value) {
        let app = Router::new()
            .route("/", post(|Json(_): Json<Input>| async { "ok" }))
            .layer(DefaultBodyLimit::max(64));
        let mut request = Request::post("/");
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = app
            .oneshot(request.body(body.into()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn malformed_json_is_a_400_problem() {
        let (status, body) = send(Some("application/json"), "{\"name\":").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("malformed_json"))
        );
    }

    #[tokio::test]
    async fn wrong_shape_is_a_422_problem_naming_the_field() {
        let (status, body) = send(Some("application/json"), "{\"nam\":1}").await;
        assert_eq!(status, 422);
        assert_eq!(body["code"], "validation_failed");
        assert!(body["detail"].as_str().is_some_and(|d| d.contains("name")));
    }

    #[tokio::test]
    async fn missing_content_type_is_a_415_problem() {
        let (status, body) = send(None, "{\"name\":\"x\"}").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (415, Some("unsupported_media_type"))
        );
        let (status, _) = send(Some("text/plain"), "{\"name\":\"x\"}").await;
        assert_eq!(status, 415);
    }

    #[tokio::test]
    async fn oversized_body_is_a_413_problem() {
        let big = format!("{{\"name\":\"{}\"}}", "x".repeat(100));
        let (status, body) = send(Some("application/json"), big).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (413, Some("payload_too_large"))
        );
    }
}
