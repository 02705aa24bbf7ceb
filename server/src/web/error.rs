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

/// The same error inside the site's layout (navigation, who is signed in), for requests that
/// went through the session layer.
#[derive(Template)]
#[template(path = "error_page.html")]
struct ErrorInLayout<'a> {
    visitor: &'a super::session::Visitor,
    title: &'a str,
    message: &'a str,
}

/// What an error page says, left on the response for [`in_layout`].
#[derive(Debug, Clone)]
struct ErrorContent {
    title: &'static str,
    message: String,
}

/// Renders error pages inside the layout: the error itself cannot know the visitor, the
/// request (after the session layer) does. Sits inside the session layer.
pub async fn in_layout(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let visitor = request
        .extensions()
        .get::<super::session::Visitor>()
        .cloned();
    let mut response = next.run(request).await;
    let Some(content) = response.extensions_mut().remove::<ErrorContent>() else {
        return response;
    };
    let Some(visitor) = visitor else {
        return response;
    };
    let page = ErrorInLayout {
        visitor: &visitor,
        title: content.title,
        message: &content.message,
    };
    match page.render() {
        Ok(body) => {
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from(body))
        }
        Err(error) => {
            tracing::warn!(%error, "the error page could not be rendered in the layout");
            response
        }
    }
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
        response
            .extensions_mut()
            .insert(ErrorContent { title, message });
        if let WebError::TooManyRequests { retry_after_secs } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Only same-site paths survive as a `next` target, so the sign-in page cannot be turned into an
/// open redirect; anything else becomes `/`.
pub fn safe_next(next: &str) -> &str {
    if is_same_site_path(next) { next } else { "/" }
}

/// How often a `next` value is percent-decoded and judged again: a value can pass through a
/// proxy or a second redirect that decodes it once more.
const DECODE_ROUNDS: usize = 3;
const MAX_NEXT_BYTES: usize = 2048;

/// A path-absolute URL a browser cannot read as another origin. Browsers strip tab, CR and LF
/// anywhere in a URL (`/\t/host` is `//host`), read `\` as `/` (`/\host` is `//host`), and
/// `//host` is a URL of its own; none of those may appear, neither as typed nor once
/// percent-decoded (`/%2F%2Fhost`, `/%5Chost`, `/%09/host`, and the same encoded twice).
fn is_same_site_path(next: &str) -> bool {
    if next.len() > MAX_NEXT_BYTES {
        return false;
    }
    let mut text = std::borrow::Cow::Borrowed(next);
    for _ in 0..DECODE_ROUNDS {
        let plain = text.starts_with('/')
            && !text.starts_with("//")
            && !text.chars().any(|c| c == '\\' || c.is_control());
        if !plain {
            return false;
        }
        let decoded = percent_decode(&text);
        if decoded == *text {
            return true;
        }
        text = std::borrow::Cow::Owned(decoded);
    }
    // Still changing after every round: nobody needs that many layers of encoding.
    false
}

/// `%XX` to the byte it names; anything that does not decode to UTF-8 becomes U+FFFD, which is
/// harmless in a path.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits make at most 255.
            out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode_next(next: &str) -> String {
    form_urlencoded::byte_serialize(safe_next(next).as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn same_site_paths_are_kept() {
        for path in [
            "/",
            "/labs/demo-etcd/steps/encrypt",
            "/labs?filter=a%20b",
            "/progress/abc?next=%2Fcluster",
            "/..//host",
            "/a/b//c",
        ] {
            assert_eq!(safe_next(path), path, "{path}");
        }
    }

    #[test]
    fn protocol_relative_urls_are_refused() {
        assert_eq!(safe_next("//evil.example"), "/");
        assert_eq!(safe_next("///evil.example"), "/");
    }

    #[test]
    fn backslashes_that_browsers_read_as_slashes_are_refused() {
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next("\\\\evil.example"), "/");
        assert_eq!(safe_next("\\/evil.example"), "/");
        assert_eq!(safe_next("/labs\\..\\..\\evil"), "/");
    }

    #[test]
    fn tabs_newlines_and_other_controls_that_browsers_strip_are_refused() {
        for trick in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/\r\n/evil.example",
            "/labs\u{0}",
            "/\u{7f}/evil.example",
            "/labs/x\nSet-Cookie: a=b",
        ] {
            assert_eq!(safe_next(trick), "/", "{trick:?}");
        }
    }

    #[test]
    fn percent_encoded_tricks_are_refused_once_and_twice_encoded() {
        for trick in [
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/%09/evil.example",
            "/%0A/evil.example",
            "/%0d%0a/evil.example",
            "%2F%2Fevil.example",
            "/%252F%252Fevil.example",
            "/%255Cevil.example",
            "/%2509/evil.example",
            "/%25252F%25252Fevil.example",
        ] {
            assert_eq!(safe_next(trick), "/", "{trick}");
        }
    }

    #[test]
    fn schemes_and_values_not_starting_with_a_slash_are_refused() {
        for trick in [
            "https://evil.example",
            "http:evil.example",
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "evil.example",
            " /labs",
            "\t//evil.example",
            "",
            "labs",
        ] {
            assert_eq!(safe_next(trick), "/", "{trick}");
        }
    }

    #[test]
    fn absurd_lengths_are_refused() {
        let long = format!("/{}", "a".repeat(5000));
        assert_eq!(safe_next(&long), "/");
    }
}
