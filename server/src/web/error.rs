//! The one error type of the web layer. Internal failures are logged with their cause and shown to
//! the visitor as a plain page without details; everything else says what to do.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Also what a learner gets for another learner's attempt, progress or cluster, and for staff
    /// pages: existence is not revealed.
    #[error("not found")]
    NotFound,
    #[error("sign-in required")]
    SignInRequired { next: String },
    #[error("the form's security token is missing or wrong")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error("too many attempts")]
    TooManyRequests { retry_after_secs: u64 },
    #[error(transparent)]
    Internal(#[from] crate::Error),
}

impl From<sqlx::Error> for WebError {
    fn from(error: sqlx::Error) -> Self {
        WebError::Internal(crate::Error::Database(error))
    }
}

impl From<askama::Error> for WebError {
    fn from(error: askama::Error) -> Self {
        WebError::Internal(crate::Error::Template(error))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            WebError::SignInRequired { next } => {
                let target = format!("/signin?next={}", encode_next(next));
                return Redirect::to(&target).into_response();
            }
            WebError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here. Check the address, or go back to the labs.".to_owned(),
            ),
            WebError::Csrf => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form's security token is missing or does not match your session. Reload the \
                 page and try again."
                    .to_owned(),
            ),
            WebError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, "Cannot do that", message.clone())
            }
            WebError::TooManyRequests { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                format!(
                    "Too many wrong passwords. Wait {retry_after_secs} seconds before trying again."
                ),
            ),
            WebError::Internal(error) => {
                tracing::error!(error = %error, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not complete this request. It has been logged; try again \
                     in a moment."
                        .to_owned(),
                )
            }
        };
        let body = ErrorPage {
            title,
            message: &message,
        }
        .render()
        .unwrap_or_else(|_| message.clone());
        let mut response = (status, Html(body)).into_response();
        if let WebError::TooManyRequests { retry_after_secs } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Only same-site paths survive as a `next` target, so the sign-in page cannot be turned into an
/// open redirect.
pub fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

fn encode_next(next: &str) -> String {
    form_urlencoded::byte_serialize(safe_next(next).as_bytes()).collect()
}
