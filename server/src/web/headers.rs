//! Security headers on every response: a Content-Security-Policy that allows only the app's own
//! scripts, styles and connections (the terminal's WebSocket is same-origin), who may frame the
//! app, no MIME sniffing, no full URLs in the Referer, and HSTS when the public URL is https.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::config::Config;
pub use crate::config::parse_frame_ancestors;

/// Put into a response's extensions by a page that hosts the xterm.js terminal: xterm's renderer
/// writes its measured cell sizes and theme into `<style>` elements it creates at run time and
/// takes no nonce itself. That page's policy also allows style elements that carry the
/// request's [`StyleNonce`], which `static/style-nonce.js` stamps on every style element the
/// page's scripts create. Markup injected into the page cannot know the nonce.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeStyles;

/// A fresh random value per request, in the request's extensions for a page that renders it
/// (`<meta name="style-nonce">`) and marks its response with [`RuntimeStyles`].
#[derive(Debug, Clone)]
pub struct StyleNonce(pub String);

/// The header values, computed once from the configuration.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    policy: HeaderValue,
    frame_ancestors: String,
    frame_options: Option<HeaderValue>,
    hsts: Option<HeaderValue>,
}

/// Kept short so a certificate or proxy mistake can be undone within a year; no
/// `includeSubDomains`, which would also bind hosts hardlab does not own.
const HSTS: &str = "max-age=31536000";

impl SecurityHeaders {
    /// `frame_ancestors` is checked when the configuration is read; a configuration built in code
    /// skips that, so the check runs again here and a list that fails it frames nothing.
    pub fn from_config(config: &Config) -> Self {
        let allowed = parse_frame_ancestors(&config.frame_ancestors).unwrap_or_else(|error| {
            tracing::error!(%error, "nobody may frame the app");
            Vec::new()
        });
        let framable = !allowed.is_empty();
        let ancestors = if framable {
            allowed.join(" ")
        } else {
            "'none'".to_owned()
        };
        let policy = policy_value("'self'", &ancestors);
        SecurityHeaders {
            policy,
            frame_ancestors: ancestors,
            // Older browsers know only X-Frame-Options, which cannot list origins: sent only
            // when nobody may frame the app.
            frame_options: (!framable).then_some(HeaderValue::from_static("DENY")),
            hsts: config
                .public_url_is_https()
                .then_some(HeaderValue::from_static(HSTS)),
        }
    }
}

fn policy_value(style_sources: &str, frame_ancestors: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "default-src 'self'; script-src 'self'; style-src {style_sources}; img-src 'self' data:; \
         font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors {frame_ancestors}"
    ))
    // Checked origins and base64url nonces are header-safe; this only keeps a policy in every
    // case.
    .unwrap_or(HeaderValue::from_static(
        "default-src 'self'; frame-ancestors 'none'",
    ))
}

/// The middleware of [`super::app`]; a value a handler set itself is kept.
pub async fn security_headers(
    State(headers): State<Arc<SecurityHeaders>>,
    mut request: Request,
    next: Next,
) -> Response {
    let nonce = crate::db::random_id();
    request.extensions_mut().insert(StyleNonce(nonce.clone()));
    let mut response = next.run(request).await;
    let policy = if response.extensions().get::<RuntimeStyles>().is_some() {
        policy_value(&format!("'self' 'nonce-{nonce}'"), &headers.frame_ancestors)
    } else {
        headers.policy.clone()
    };
    let out = response.headers_mut();
    let mut set = |name: HeaderName, value: HeaderValue| {
        out.entry(name).or_insert(value);
    };
    set(header::CONTENT_SECURITY_POLICY, policy);
    set(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    set(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if let Some(value) = &headers.frame_options {
        set(header::X_FRAME_OPTIONS, value.clone());
    }
    if let Some(value) = &headers.hsts {
        set(header::STRICT_TRANSPORT_SECURITY, value.clone());
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Result;

    fn parse(entries: &[&str]) -> Result<Vec<String>> {
        parse_frame_ancestors(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn origins_and_self_are_accepted() {
        assert_eq!(
            parse(&[
                "https://LMS.example.org/",
                "'self'",
                "http://127.0.0.1:8443",
                "https://*.example.edu"
            ])
            .unwrap(),
            vec![
                "https://lms.example.org",
                "'self'",
                "http://127.0.0.1:8443",
                "https://*.example.edu"
            ]
        );
        assert!(parse(&[" ", ""]).unwrap().is_empty());
    }

    #[test]
    fn anything_that_would_widen_or_break_the_policy_is_refused_by_name() {
        for bad in [
            "*",
            "https:",
            "'none'",
            "'unsafe-inline'",
            "https://lms.example.org; script-src *",
            "https://lms.example.org/course/1",
            "javascript://x",
            "https://",
            "https://host:99999",
            "lms.example.org",
        ] {
            let error = parse(&[bad]).unwrap_err().to_string();
            assert!(error.contains("frame_ancestors"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_default_refuses_every_frame_and_https_adds_hsts() {
        let headers = SecurityHeaders::from_config(&Config::default());
        let policy = headers.policy.to_str().unwrap();
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        assert_eq!(headers.frame_options.unwrap(), "DENY");
        assert!(headers.hsts.is_none());

        let embedded = SecurityHeaders::from_config(&Config {
            frame_ancestors: vec!["https://lms.example.org".into()],
            public_url: Some("https://lab.example.org".into()),
            ..Config::default()
        });
        assert!(
            embedded
                .policy
                .to_str()
                .unwrap()
                .ends_with("frame-ancestors https://lms.example.org")
        );
        assert!(embedded.frame_options.is_none());
        assert_eq!(embedded.hsts.unwrap(), HSTS);
    }
}
