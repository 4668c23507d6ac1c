//! The demo app (`clients/demo`, built into `clients/demo/dist` and checked
//! in), embedded in the binary and served when `TANDEM_SERVE_DEMO` is on
//! (always in `tandem dev`): its assets at their paths, `index.html` at `/`
//! and for any other unknown `GET` that asks for HTML (app routes such as
//! `/verify-email`). Everything else that no route knows stays the JSON 404.
//! Serves only the fixed files below; nothing is read from disk at run time.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};

use crate::state::State;

macro_rules! dist {
    ($file:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../clients/demo/dist/",
            $file
        ))
    };
}

/// Every file of `clients/demo/dist` but `index.html`: URL path, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        dist!("assets/app.js"),
    ),
    (
        "/assets/app.css",
        "text/css; charset=utf-8",
        dist!("assets/app.css"),
    ),
];

const INDEX: &[u8] = dist!("index.html");

/// The placeholder in `index.html` that carries the relay URL.
const RELAY_META: &str = r#"<meta name="tandem-relay-url" content="">"#;

/// The default service: a demo file when the demo is on, else the JSON 404.
pub async fn fallback(req: HttpRequest, state: State) -> HttpResponse {
    let readable = req.method() == Method::GET || req.method() == Method::HEAD;
    if !state.config.serve_demo || !readable {
        return crate::startup::not_found();
    }
    let path = req.path();
    if let Some((_, content_type, bytes)) = ASSETS.iter().find(|(p, _, _)| *p == path) {
        return file(content_type, bytes.to_vec());
    }
    if path == "/" || accepts_html(&req) {
        let relay = state.public_relay_url.get().map(String::as_str);
        return file("text/html; charset=utf-8", index_html(relay).into_bytes());
    }
    crate::startup::not_found()
}

fn accepts_html(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

fn file(content_type: &'static str, body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .body(body)
}

/// `index.html` with the relay URL filled in (attribute-escaped).
fn index_html(relay_url: Option<&str>) -> String {
    let page = String::from_utf8_lossy(INDEX);
    let Some(url) = relay_url else {
        return page.into_owned();
    };
    let escaped = url
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    page.replace(
        RELAY_META,
        &format!(r#"<meta name="tandem-relay-url" content="{escaped}">"#),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A file added to the build must be added to `ASSETS` too.
    #[test]
    fn every_built_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/demo/dist");
        let mut found = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path.strip_prefix(&root).unwrap().to_string_lossy();
                    found.push(format!("/{rel}"));
                }
            }
        }
        found.retain(|p| p != "/index.html");
        found.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|(p, _, _)| p.to_string()).collect();
        listed.sort();
        assert_eq!(found, listed);
    }

    #[test]
    fn relay_url_is_filled_in_and_escaped() {
        assert!(String::from_utf8_lossy(INDEX).contains(RELAY_META));
        let page = index_html(Some(r#"ws://h:1/"><script>"#));
        assert!(page.contains(r#"content="ws://h:1/&quot;&gt;&lt;script&gt;""#));
        assert!(!page.contains(RELAY_META));
    }
}
