//! The API's error answers: a status and a JSON body that says what is wrong and, for an invalid
//! input, which field (`{"error": "...", "field": "routes.web.rule", "errors": [...]}`).

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use serde_json::json;

/// One error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The field at fault, for an invalid input.
    pub field: Option<String>,
    /// Every problem found, `(field, message)`, when there are several.
    pub errors: Vec<(Option<String>, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
            errors: Vec::new(),
        }
    }

    /// A 400 for an invalid input, naming each field at fault.
    pub fn invalid(errors: Vec<(Option<String>, String)>) -> ApiError {
        let first = errors.first().cloned().unwrap_or((None, "invalid".into()));
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: match &first.0 {
                Some(f) => format!("{f}: {}", first.1),
                None => first.1.clone(),
            },
            field: first.0,
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(f) = &self.field {
            body["field"] = json!(f);
        }
        if !self.errors.is_empty() {
            body["errors"] = self
                .errors
                .iter()
                .map(|(f, m)| json!({ "field": f, "message": m }))
                .collect();
        }
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"tether\", Basic realm=\"tether\""),
            );
        }
        resp
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint: see docs/api.md (GET /api/version, /api/routes, /api/services, /api/backends, /api/errors)",
    )
}
