//! Error policy. Domain code returns [`Error`], which knows nothing of HTTP;
//! `IntoResponse` below is the one place where failures become responses.
//! Client mistakes are 4xx with a message that says what to fix; only our own
//! faults are 5xx, and their details go to the log, not to the client.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::BadRequest(msg) => (StatusCode::BAD_REQUEST, msg).into_response(),
            Error::NotFound => (StatusCode::NOT_FOUND, "not found").into_response(),
            Error::Internal(err) => {
                tracing::error!(error = %format!("{err:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "passgate hit an internal error; try again, and tell the operator if it persists",
                )
                    .into_response()
            }
        }
    }
}
