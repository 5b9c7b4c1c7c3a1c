//! The small HTML pages the mailed links open (`verify-email`, `reset-password`):
//! plain HTML forms that post back to the server, no script at all, one
//! `<style>` element allowed by its hash under a strict Content-Security-Policy,
//! light and dark through `prefers-color-scheme`.
//!
//! Who gets HTML: a `GET` whose `Accept` names `text/html` (a browser opening
//! the link), and a `POST` of `application/x-www-form-urlencoded` (the page's
//! own form). Everyone else gets the JSON of the wire contract.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#f5f6f8;--fg:#1b1d21;--card:#fff;--muted:#555c69;\
--accent:#2450c8;--on-accent:#fff;--bad:#a8231b;--line:#cfd4dc}\
@media (prefers-color-scheme:dark){:root{--bg:#14161a;--fg:#e9ebef;--card:#1f2228;\
--muted:#a7adb9;--accent:#86a6ff;--on-accent:#0b0f1f;--bad:#ff9a90;--line:#3b4049}}\
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,sans-serif}\
main{max-width:26rem;margin:8vh auto;padding:2rem;background:var(--card);\
border:1px solid var(--line);border-radius:12px}\
h1{font-size:1.4rem;margin:0 0 1rem}\
label{display:block;font-weight:600;margin:1rem 0 .25rem}\
input{box-sizing:border-box;width:100%;padding:.6rem;font:inherit;color:inherit;\
background:var(--bg);border:1px solid var(--line);border-radius:8px}\
button{margin-top:1.25rem;width:100%;padding:.7rem;font:inherit;font-weight:600;\
color:var(--on-accent);background:var(--accent);border:0;border-radius:8px;cursor:pointer}\
input:focus-visible,button:focus-visible{outline:3px solid var(--accent);outline-offset:2px}\
.hint{color:var(--muted);font-size:.9rem;margin:.25rem 0 0}\
.error{color:var(--bad);font-weight:600}";

/// Nothing but this document's own style, and forms posting to this origin.
static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
         base-uri 'none'; frame-ancestors 'none'"
    )
});

/// The Content-Security-Policy every page is sent with (tests compare it).
pub fn content_security_policy() -> &'static str {
    &CSP
}

/// A `GET` from a browser: its `Accept` lists `text/html`.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"))
}

/// Text made safe for HTML content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `title` and `app` are escaped here, `inner` is trusted HTML
/// (callers escape what they put in it).
pub fn page(status: StatusCode, app: &str, title: &str, inner: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{title} · {app}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <h1>{title}</h1>\n{inner}\n</main>\n</body>\n</html>\n",
        title = escape(title),
        app = escape(app),
    );
    let mut res = (status, html).into_response();
    let headers = res.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        // The address holds a token: never cached, never sent on as a referrer.
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(csp) = HeaderValue::from_str(content_security_policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    res
}

/// A paragraph of plain text.
pub fn para(text: &str) -> String {
    format!("<p>{}</p>", escape(text))
}

/// An error line that screen readers announce.
pub fn alert(text: &str) -> String {
    format!("<p class=\"error\" role=\"alert\">{}</p>", escape(text))
}

/// The page of a link that does not (or no longer) work.
pub fn invalid_link(app: &str, ask_again: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        app,
        "This link does not work",
        &format!(
            "{}{}",
            para("It was already used, it has expired, or it was not copied whole."),
            para(ask_again)
        ),
    )
}

/// The page of a form post the server could not read.
pub fn bad_form(app: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        app,
        "Something went wrong",
        &para("The form could not be read. Open the link from your email again."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_negotiates() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let mut h = HeaderMap::new();
        assert!(!wants_html(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_html(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(wants_html(&h));
        assert!(content_security_policy().contains("style-src 'sha256-"));
        assert!(!content_security_policy().contains("unsafe"));
    }
}
