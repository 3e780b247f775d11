//! The web console (Web 控制台): 值班台 (duty desk), 隐患工单 (tickets) and
//! 监管端 (bureau view) as one page of plain HTML, CSS and JavaScript in
//! Simplified Chinese, embedded in the binary so that it works on a LAN with
//! no Internet: no CDN, no build step, no npm.
//!
//! The page is served at `/` and its files under `/console/{file}`; both are
//! ordinary routes with `#[utoipa::path]` (tag `console`), registered with
//! `utoipa_axum::routes!` like the API, so the rule "everything served is
//! documented" has no exception. The page talks only to `/api/v1/…`, with
//! the bearer token from `POST /api/v1/login` in the `Authorization`
//! header — including the event stream, which it reads with `fetch` rather
//! than `EventSource` (which cannot send headers), so a token never travels
//! in a URL.
//!
//! Caching: every answer carries a strong `ETag` (SHA-256 of the bytes) and
//! `Cache-Control: no-cache`: a browser revalidates and gets `304 Not
//! Modified` until the gateway is upgraded, and never runs a stale script
//! against a newer API.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// An embedded file of the console.
pub struct Asset {
    pub name: &'static str,
    pub media_type: &'static str,
    pub body: &'static [u8],
    /// Quoted strong entity tag.
    pub etag: String,
}

/// The page's files, by the name they are served under.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../console/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/app.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/charts.js"),
    ),
    (
        "gb26875.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/gb26875.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../console/favicon.svg"),
    ),
];

/// Every embedded file with its entity tag, computed once.
pub static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, media_type, body)| {
            let digest = Sha256::digest(body);
            let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            Asset {
                name,
                media_type,
                body,
                etag: format!("\"{hex}\""),
            }
        })
        .collect()
});

/// The page's content security policy: its own files only, no inline
/// script or style; evidence photos are shown from `blob:` URLs (they are
/// fetched with the token).
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let mut out = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.media_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = out.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&asset.etag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if asset.name == "index.html" {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    out
}

fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The web console (值班台、隐患工单、监管端), one page in Simplified Chinese.
#[utoipa::path(
    get,
    path = "/",
    tag = "console",
    responses(
        (status = OK, description = "The console page", body = String, content_type = "text/html"),
        (status = NOT_MODIFIED, description = "Unchanged since the `ETag` given in `If-None-Match`"),
    )
)]
pub async fn index(headers: HeaderMap) -> Response {
    match asset("index.html") {
        Some(a) => serve(a, &headers),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A file of the web console (script, style sheet, icon), embedded in the gateway.
#[utoipa::path(
    get,
    path = "/console/{file}",
    tag = "console",
    params(("file" = String, Path, description = "app.js, charts.js, app.css or favicon.svg")),
    responses(
        (status = OK, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "image/svg+xml"),
        )),
        (status = NOT_MODIFIED, description = "Unchanged since the `ETag` given in `If-None-Match`"),
        (status = NOT_FOUND, description = "No such file"),
    )
)]
pub async fn file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match asset(&file).filter(|a| a.name != "index.html") {
        Some(a) => serve(a, &headers),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_embedded_and_the_page_names_only_embedded_files() {
        let page = std::str::from_utf8(asset("index.html").unwrap().body).unwrap();
        for a in ASSETS.iter() {
            assert!(!a.body.is_empty(), "{}", a.name);
            assert_eq!(a.etag.len(), 34, "{}", a.name);
        }
        // Every /console/… reference of the page is a file served here,
        // and nothing is fetched from another host.
        for part in page.split("/console/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect();
            assert!(asset(&name).is_some(), "the page names {name}");
        }
        for a in ASSETS.iter() {
            // The SVG namespace is a name, not an address that is fetched.
            let text = String::from_utf8_lossy(a.body).replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
                "{} refers to another host",
                a.name
            );
        }
    }
}
