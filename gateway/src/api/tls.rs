//! HTTPS for the console and API (`[http.tls]`): the listener's TLS
//! configuration and what every answer over TLS carries.
//!
//! The certificate and key come from PEM files through
//! [`crate::tls::server::Reloadable`]: replaced files (or `SIGHUP`) take
//! effect for new connections, while open ones, an event stream included,
//! keep the session they have. The handshake itself runs in the accept
//! loop of [`super::limits`], inside a connection's slot and within the
//! header-read timeout, so a client that opens TCP and never finishes the
//! handshake holds a slot no longer than one that never sends a request.
//!
//! Answers over HTTPS carry `Strict-Transport-Security` (a browser that has
//! seen the console over https never falls back to http for it) and every
//! cookie gets `Secure` ([`harden`]); answers over plain http get neither,
//! so the demo on `http://127.0.0.1` is not told to use https.

use crate::tls::server::{Reloadable, ServerFiles};
use crate::tls::TlsError;
use axum::http::header::{HeaderValue, SET_COOKIE, STRICT_TRANSPORT_SECURITY};
use axum::http::HeaderMap;
use std::sync::Arc;

/// The HSTS policy of every https answer: one year. No `includeSubDomains`:
/// the console's host name may share a domain with servers that are not
/// on https, and the gateway is not the one to decide for them.
pub const HSTS: &str = "max-age=31536000";

/// The listener name in logs.
pub const LISTENER: &str = "https";

pub use crate::tls::server::server_config;

/// Loads `[http.tls]`; fails when the files cannot be read or do not belong
/// together (the gateway then does not start: better than serving the
/// console in clear text when TLS was asked for).
pub fn load(files: &ServerFiles) -> Result<Arc<Reloadable>, TlsError> {
    Reloadable::load(LISTENER, files.clone(), Box::new(server_config))
}

/// What an answer over https carries beside its own headers: HSTS, and
/// `Secure` on every cookie that lacks it.
pub fn harden(headers: &mut HeaderMap) {
    headers.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    let cookies: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(SET_COOKIE);
    for c in cookies {
        let secured = match c.to_str() {
            Ok(text) if !has_secure(text) => {
                HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or(c)
            }
            _ => c,
        };
        headers.append(SET_COOKIE, secured);
    }
}

/// Whether a `Set-Cookie` value has the `Secure` attribute.
fn has_secure(cookie: &str) -> bool {
    cookie
        .split(';')
        .skip(1)
        .any(|attr| attr.trim().eq_ignore_ascii_case("secure"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_answers_get_hsts_and_secure_cookies() {
        let mut h = HeaderMap::new();
        h.append(
            SET_COOKIE,
            HeaderValue::from_static("a=1; Path=/; HttpOnly"),
        );
        h.append(SET_COOKIE, HeaderValue::from_static("b=2; secure"));
        h.append(SET_COOKIE, HeaderValue::from_static("secure=3"));
        harden(&mut h);
        assert_eq!(h.get(STRICT_TRANSPORT_SECURITY).unwrap(), HSTS);
        let cookies: Vec<&str> = h
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            cookies,
            [
                "a=1; Path=/; HttpOnly; Secure",
                "b=2; secure",
                "secure=3; Secure"
            ]
        );
    }

    #[test]
    fn answers_without_cookies_get_only_hsts() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/html"));
        harden(&mut h);
        assert_eq!(h.len(), 2);
        assert!(h.get(SET_COOKIE).is_none());
    }
}
