//! Secrets out of logs and API answers (脱敏).
//!
//! Vendor robot tokens live in URLs (`access_token=`, `key=`, `sign=`), and
//! a database URL may carry a password. Anything that may hold a URL — an
//! HTTP client's error, a vendor's answer, a configured address — goes
//! through [`text`] before it is logged, stored or answered. Pure
//! functions; no allocation when there is nothing to hide.

use std::borrow::Cow;

/// What replaces a hidden value.
pub const HIDDEN: &str = "***";

/// Query parameters whose values are secrets wherever they appear, also
/// outside a URL (`errmsg: invalid access_token=…`). Matched without regard
/// to case, as the whole parameter name.
const SECRET_KEYS: &[&str] = &[
    "access_token",
    "token",
    "key",
    "sign",
    "signature",
    "secret",
    "password",
    "passwd",
    "pwd",
    "apikey",
    "api_key",
    "appsecret",
    "app_secret",
    "auth",
];

/// `text` with every URL's password and query string hidden
/// (`https://u:pw@h/p?key=abc` → `https://u:***@h/p?***`) and every
/// `name=value` whose name is a known secret parameter hidden
/// (`access_token=***`).
pub fn text(s: &str) -> Cow<'_, str> {
    if !needs_work(s) {
        return Cow::Borrowed(s);
    }
    match hide_urls(s) {
        Cow::Borrowed(b) => hide_params(b),
        Cow::Owned(o) => Cow::Owned(hide_params(&o).into_owned()),
    }
}

/// A URL for a log line: its password and its query string hidden.
pub fn url(s: &str) -> String {
    text(s).into_owned()
}

fn needs_work(s: &str) -> bool {
    s.contains("://") || s.contains('=')
}

/// Characters that end a URL inside free text.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']' | '}' | '`' | ',')
}

fn hide_urls(s: &str) -> Cow<'_, str> {
    if !s.contains("://") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        // The scheme: letters, digits, `+ - .` right before `://`.
        let scheme_start = rest[..i]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(i, |(j, _)| j);
        out.push_str(&rest[..scheme_start]);
        let after = &rest[i + 3..];
        let end = after.find(ends_url).unwrap_or(after.len());
        out.push_str(&rest[scheme_start..i + 3]);
        out.push_str(&hide_in_url(&after[..end]));
        rest = &after[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `user:pw@host/path?query#frag` (the part after `scheme://`) with the
/// password and the query hidden.
fn hide_in_url(u: &str) -> String {
    let authority_end = u.find(['/', '?', '#']).unwrap_or(u.len());
    let (authority, tail) = u.split_at(authority_end);
    let mut out = String::with_capacity(u.len());
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push(':');
                    out.push_str(HIDDEN);
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..q]);
            out.push('?');
            out.push_str(HIDDEN);
        }
        None => out.push_str(tail),
    }
    out
}

fn hide_params(s: &str) -> Cow<'_, str> {
    if !s.contains('=') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while let Some(off) = s[i..].find('=') {
        let eq = i + off;
        // The parameter name: word characters right before `=`.
        let mut start = eq;
        while start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            start -= 1;
        }
        let name = &s[start..eq];
        let secret = !name.is_empty() && SECRET_KEYS.iter().any(|k| k.eq_ignore_ascii_case(name));
        let value_end = s[eq + 1..]
            .find(|c: char| c == '&' || ends_url(c) || c == ';')
            .map_or(s.len(), |e| eq + 1 + e);
        if secret && value_end > eq + 1 && &s[eq + 1..value_end] != HIDDEN {
            out.push_str(&s[copied..eq + 1]);
            out.push_str(HIDDEN);
            copied = value_end;
            changed = true;
            i = value_end;
        } else {
            i = eq + 1;
        }
    }
    if !changed {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_query_and_password() {
        assert_eq!(
            text("error sending request for url (http://127.0.0.1:1/cgi-bin/webhook/send?key=abc-123)"),
            "error sending request for url (http://127.0.0.1:1/cgi-bin/webhook/send?***)"
        );
        assert_eq!(
            url("postgres://fire:s3cret@db.local:5432/gateway?sslmode=disable"),
            "postgres://fire:***@db.local:5432/gateway?***"
        );
        assert_eq!(
            url("postgres://fire@db.local/gateway"),
            "postgres://fire@db.local/gateway"
        );
        assert_eq!(
            url("https://oapi.dingtalk.com/robot/send?access_token=T0K&timestamp=1&sign=S%2B"),
            "https://oapi.dingtalk.com/robot/send?***"
        );
        assert_eq!(
            url("sqlite:///var/lib/x/gateway.db"),
            "sqlite:///var/lib/x/gateway.db"
        );
        // Two URLs in one text, and one at the very end.
        assert_eq!(
            text("a http://h/x?k=1 then https://u:p@h2?t=2"),
            "a http://h/x?*** then https://u:***@h2?***"
        );
    }

    #[test]
    fn secret_parameters_are_hidden_outside_urls_too() {
        assert_eq!(
            text(r#"93000 invalid webhook url, hint: [key=abc123 access_token=T&x=1], more"#),
            "93000 invalid webhook url, hint: [key=*** access_token=***&x=1], more"
        );
        assert_eq!(text("Sign=XYZ; other=ok"), "Sign=***; other=ok");
        // Names that merely end in a secret word are not secrets…
        assert_eq!(text("monkey=1 tokens=2"), "monkey=1 tokens=2");
        // …and text without any stays as it is, borrowed.
        assert!(matches!(text("HTTP 500 internal error"), Cow::Borrowed(_)));
        assert!(matches!(text("a = b"), Cow::Borrowed(_)));
        assert_eq!(text("key="), "key=");
    }

    #[test]
    fn hostile_text_never_panics_and_never_keeps_a_secret() {
        // Multi-byte characters around every delimiter.
        for s in [
            "键=值 key=密钥 http://例子/路径?key=密钥",
            "://",
            "=",
            "a://?",
            "x://@",
            "x://u:@h?",
            "==key==zz",
            "é://é?é=é",
            "key=\u{0}secret",
            "http://[::1]:80/p?token=zz#frag",
        ] {
            let t = text(s);
            assert!(!t.contains("密钥"), "{s} → {t}");
            assert!(!t.contains("zz"), "{s} → {t}");
        }
    }
}
