//! The server's error responses (JSON `{"error": {"code", "message"}}` with the right status;
//! a 500 keeps its details for the log) and the reading of multipart forms with their uploads
//! (a text field given twice is refused).

use std::collections::HashMap;
use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use exporter::onnx::one_line;
use serde_json::json;

use crate::error::RuntimeError;

/// An HTTP error: status, machine-readable code and a one-line message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 404 `model_not_loaded`: the server was started without the model an endpoint needs.
    pub fn model_not_loaded(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "model_not_loaded", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    pub fn upload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload_too_large",
            format!(
                "request body over the upload limit of {} bytes (--max-upload-mb)",
                limit
            ),
        )
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }
}

/// The message a 500 answers with: what failed inside the server (a library's message, a
/// source file and line of ONNX Runtime) is for its log, not for the client.
pub const INTERNAL_MESSAGE: &str = "internal error; the server logged the details";

/// What an error response was about (its code and full message), kept on the response for the
/// access log; the body of a 500 says only [`INTERNAL_MESSAGE`].
#[derive(Debug, Clone)]
pub struct ErrorNote {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    /// The message the client sees.
    pub fn public_message(&self) -> &str {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            INTERNAL_MESSAGE
        } else {
            &self.message
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.public_message()}});
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r.extensions_mut().insert(ErrorNote {
            code: self.code,
            message: self.message,
        });
        r
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> ApiError {
        let msg = one_line(&e.to_string());
        let (status, code) = match &e {
            RuntimeError::EmptyAudio { .. } => (StatusCode::BAD_REQUEST, "empty_audio"),
            RuntimeError::TooShort { .. } => (StatusCode::BAD_REQUEST, "audio_too_short"),
            RuntimeError::NoSpeech { .. } => (StatusCode::BAD_REQUEST, "no_speech"),
            RuntimeError::TooLong { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "audio_too_long"),
            RuntimeError::WavRead { .. }
            | RuntimeError::WavFormat { .. }
            | RuntimeError::BadAudio { .. }
            | RuntimeError::NonFinite { .. }
            | RuntimeError::Resample { .. } => (StatusCode::BAD_REQUEST, "bad_audio"),
            RuntimeError::UnknownSpeaker { .. } => (StatusCode::NOT_FOUND, "not_found"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, msg)
    }
}

/// An uploaded file of a multipart form.
#[derive(Clone)]
pub struct Upload {
    pub filename: String,
    pub bytes: Bytes,
}

impl Upload {
    /// The label of this upload in error messages: `upload 'name.wav'`.
    pub fn label(&self) -> PathBuf {
        PathBuf::from(format!("upload '{}'", self.filename))
    }
}

/// A multipart form: text fields and the files of the `file` field (also `file[]`, `files`).
#[derive(Default)]
pub struct Form {
    pub fields: HashMap<String, String>,
    pub files: Vec<Upload>,
}

const MAX_TEXT_FIELD: usize = 64 * 1024;

/// Reads a whole multipart form; a body that is not multipart is a 415, one over the upload
/// limit a 413.
pub async fn read_form(
    mp: Result<Multipart, MultipartRejection>,
    limit: usize,
) -> Result<Form, ApiError> {
    let mut mp = mp.map_err(|e| {
        ApiError::unsupported_media(format!(
            "expected a multipart/form-data body ({})",
            e.body_text()
        ))
    })?;
    let mut form = Form::default();
    let field_err = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::upload_too_large(limit)
        } else {
            ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
        }
    };
    while let Some(field) = mp.next_field().await.map_err(field_err)? {
        let name = field.name().unwrap_or("").to_string();
        let filename = field.file_name().map(str::to_string);
        let bytes = field.bytes().await.map_err(field_err)?;
        if matches!(name.as_str(), "file" | "file[]" | "files" | "files[]") {
            form.files.push(Upload {
                filename: filename.unwrap_or_else(|| "file".into()),
                bytes,
            });
        } else {
            if bytes.len() > MAX_TEXT_FIELD {
                return Err(ApiError::bad_request(format!(
                    "form field '{name}' is over {MAX_TEXT_FIELD} bytes"
                )));
            }
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                ApiError::bad_request(format!("form field '{name}' is not UTF-8 text"))
            })?;
            if form.fields.contains_key(&name) {
                return Err(ApiError::bad_request(format!(
                    "form field '{name}' is given more than once"
                )));
            }
            form.fields.insert(name, text);
        }
    }
    Ok(form)
}

impl Form {
    /// The one uploaded file (400 when there is none or several).
    pub fn one_file(&self) -> Result<&Upload, ApiError> {
        match self.files.as_slice() {
            [f] => Ok(f),
            [] => Err(ApiError::bad_request(
                "missing form field 'file' (the audio upload)",
            )),
            _ => Err(ApiError::bad_request(format!(
                "expected one 'file', got {}",
                self.files.len()
            ))),
        }
    }

    /// A required text field.
    pub fn text(&self, name: &str) -> Result<&str, ApiError> {
        self.fields
            .get(name)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("missing form field '{name}'")))
    }

    /// An optional text field parsed as `T`.
    pub fn parse<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self
            .fields
            .get(name)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("form field '{name}': bad value '{s}'"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_500_keeps_its_details_for_the_log() {
        let r = ApiError::internal("bfc_arena.cc:360 Available memory of 0 is smaller than needed")
            .into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let note = r.extensions().get::<ErrorNote>().cloned().unwrap();
        assert!(note.message.contains("bfc_arena.cc"));
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("bfc_arena"), "{text}");
        assert!(text.contains(INTERNAL_MESSAGE), "{text}");
        // other errors say what is wrong
        let r = ApiError::bad_request("form field 'top' must be 1..1000").into_response();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("'top'"));
    }
}
