//! The vendors' webhook APIs (企业微信, 钉钉, 飞书 group bots, a generic
//! signed webhook, an SMS gateway by template): building each request and
//! reading each answer, as pure functions with the time passed in.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Which API a channel speaks (configured per channel).
pub use crate::config::notify::Kind;

impl Kind {
    /// The vendor's documented rate limit: (messages, per milliseconds).
    /// 企业微信 and 钉钉 allow 20 a minute per bot (钉钉 blocks a bot for 10
    /// minutes past that); 飞书 100 a minute and 5 a second.
    pub fn limits(self, per_min_override: Option<u32>) -> Vec<(u32, u64)> {
        if let Some(n) = per_min_override {
            return vec![(n, 60_000)];
        }
        match self {
            Kind::Wecom | Kind::Dingtalk => vec![(20, 60_000)],
            Kind::Feishu => vec![(100, 60_000), (5, 1_000)],
            Kind::Webhook | Kind::Sms => vec![(60, 60_000)],
        }
    }

    /// How long the vendor refuses a bot that went past its limit.
    pub fn block_ms(self) -> u64 {
        match self {
            Kind::Dingtalk => 10 * 60_000,
            _ => 60_000,
        }
    }

    /// Longest text the vendor takes in one message, in bytes (企业微信's
    /// text content is capped at 2048 bytes).
    pub fn max_text_bytes(self) -> usize {
        match self {
            Kind::Wecom => 2000,
            Kind::Sms => 500,
            _ => 4000,
        }
    }
}

/// One HTTP request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a vendor's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Delivered,
    /// Past the rate limit: wait (the vendor may block the bot for a while).
    RateLimited(String),
    /// The signature or secret is wrong: retrying will not help until the
    /// configuration is fixed; fail over.
    Refused(String),
    /// Anything else: retry with backoff.
    Failed(String),
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 钉钉加签: base64(HMAC-SHA256(key = secret, "{timestamp_ms}\n{secret}")).
pub fn dingtalk_sign(secret: &str, timestamp_ms: u64) -> String {
    b64(&hmac(
        secret.as_bytes(),
        format!("{timestamp_ms}\n{secret}").as_bytes(),
    ))
}

/// 飞书签名: base64(HMAC-SHA256(key = "{timestamp_s}\n{secret}", empty message)).
pub fn feishu_sign(secret: &str, timestamp_s: u64) -> String {
    b64(&hmac(format!("{timestamp_s}\n{secret}").as_bytes(), b""))
}

/// The generic webhook's signature: hex HMAC-SHA256 over "{timestamp_ms}.{body}".
pub fn webhook_signature(secret: &str, timestamp_ms: u64, body: &[u8]) -> String {
    let mut msg = format!("{timestamp_ms}.").into_bytes();
    msg.extend_from_slice(body);
    format!("sha256={}", hex(&hmac(secret.as_bytes(), &msg)))
}

fn json_headers() -> Vec<(String, String)> {
    vec![("content-type".into(), "application/json".into())]
}

/// What a channel needs to build its requests.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub kind: Kind,
    pub url: &'a str,
    pub secret: Option<&'a str>,
    /// 企业微信/钉钉: mobiles to @; SMS: the phones to send to.
    pub phones: &'a [String],
    /// SMS: the body, with `{phone}` and `{text}` filled in.
    pub template: Option<&'a str>,
    /// SMS: the body's media type (JSON bodies get JSON-escaped values).
    pub content_type: &'a str,
}

/// The requests that deliver `text` (one per phone for SMS, else one).
/// `event` is the machine-readable payload of the generic webhook.
pub fn requests(t: &Target, text: &str, event: &serde_json::Value, now_ms: u64) -> Vec<Request> {
    match t.kind {
        Kind::Wecom => {
            let body = serde_json::json!({
                "msgtype": "text",
                "text": { "content": text, "mentioned_mobile_list": t.phones },
            });
            vec![Request {
                url: t.url.to_string(),
                headers: json_headers(),
                body: body.to_string().into_bytes(),
            }]
        }
        Kind::Dingtalk => {
            let url = match t.secret {
                Some(secret) => {
                    let sign = dingtalk_sign(secret, now_ms);
                    let sep = if t.url.contains('?') { '&' } else { '?' };
                    format!(
                        "{}{sep}timestamp={now_ms}&sign={}",
                        t.url,
                        crate::domain::text::percent_encode(&sign)
                    )
                }
                None => t.url.to_string(),
            };
            let body = serde_json::json!({
                "msgtype": "text",
                "text": { "content": text },
                "at": { "atMobiles": t.phones, "isAtAll": false },
            });
            vec![Request {
                url,
                headers: json_headers(),
                body: body.to_string().into_bytes(),
            }]
        }
        Kind::Feishu => {
            let mut body = serde_json::json!({
                "msg_type": "text",
                "content": { "text": text },
            });
            if let Some(secret) = t.secret {
                let ts = now_ms / 1000;
                body["timestamp"] = ts.to_string().into();
                body["sign"] = feishu_sign(secret, ts).into();
            }
            vec![Request {
                url: t.url.to_string(),
                headers: json_headers(),
                body: body.to_string().into_bytes(),
            }]
        }
        Kind::Webhook => {
            let body = serde_json::json!({ "text": text, "event": event })
                .to_string()
                .into_bytes();
            let mut headers = json_headers();
            headers.push(("x-fire-timestamp".into(), now_ms.to_string()));
            if let Some(secret) = t.secret {
                headers.push((
                    "x-fire-signature".into(),
                    webhook_signature(secret, now_ms, &body),
                ));
            }
            vec![Request {
                url: t.url.to_string(),
                headers,
                body,
            }]
        }
        Kind::Sms => {
            let template = t
                .template
                .unwrap_or(r#"{"phone":"{phone}","text":"{text}"}"#);
            let json = t.content_type.contains("json");
            let esc = |s: &str| {
                if json {
                    let quoted = serde_json::Value::from(s).to_string();
                    quoted[1..quoted.len() - 1].to_string()
                } else {
                    crate::domain::text::percent_encode(s)
                }
            };
            t.phones
                .iter()
                .map(|phone| Request {
                    url: t.url.to_string(),
                    headers: vec![("content-type".into(), t.content_type.to_string())],
                    body: template
                        .replace("{phone}", &esc(phone))
                        .replace("{text}", &esc(text))
                        .into_bytes(),
                })
                .collect()
        }
    }
}

/// Reads a vendor's answer: the HTTP status and the body.
pub fn answer(kind: Kind, status: u16, body: &[u8]) -> Answer {
    let text = || {
        String::from_utf8_lossy(body)
            .chars()
            .take(200)
            .collect::<String>()
    };
    if status == 429 {
        return Answer::RateLimited(format!("HTTP 429 {}", text()));
    }
    if !(200..300).contains(&status) {
        return match status {
            401 | 403 => Answer::Refused(format!("HTTP {status} {}", text())),
            _ => Answer::Failed(format!("HTTP {status} {}", text())),
        };
    }
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let code = |field: &str| json.as_ref().and_then(|j| j[field].as_i64());
    let msg = |field: &str| {
        json.as_ref()
            .and_then(|j| j[field].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    match kind {
        // {"errcode":0,"errmsg":"ok"}; 45009 = api freq out of limit.
        Kind::Wecom => match code("errcode") {
            Some(0) => Answer::Delivered,
            Some(45009) => Answer::RateLimited(format!("45009 {}", msg("errmsg"))),
            Some(93000) => Answer::Refused(format!("93000 {}", msg("errmsg"))),
            Some(c) => Answer::Failed(format!("{c} {}", msg("errmsg"))),
            None => Answer::Failed(format!("unreadable answer: {}", text())),
        },
        // 130101 = send too fast (the bot is blocked for 10 minutes);
        // 310000 = sign not match / keywords not in content / IP not allowed.
        Kind::Dingtalk => match code("errcode") {
            Some(0) => Answer::Delivered,
            Some(130101) => Answer::RateLimited(format!("130101 {}", msg("errmsg"))),
            Some(310000) | Some(300001) => Answer::Refused(format!(
                "{} {}",
                code("errcode").unwrap_or(0),
                msg("errmsg")
            )),
            Some(c) => Answer::Failed(format!("{c} {}", msg("errmsg"))),
            None => Answer::Failed(format!("unreadable answer: {}", text())),
        },
        // {"code":0,"msg":"success"}; 19021 = sign match fail; 11232 = frequency limited.
        Kind::Feishu => match code("code").or_else(|| code("StatusCode")) {
            Some(0) => Answer::Delivered,
            Some(11232) => Answer::RateLimited(format!("11232 {}", msg("msg"))),
            Some(19021) | Some(19022) | Some(19024) => {
                Answer::Refused(format!("{} {}", code("code").unwrap_or(0), msg("msg")))
            }
            Some(c) => Answer::Failed(format!("{c} {}", msg("msg"))),
            None => Answer::Failed(format!("unreadable answer: {}", text())),
        },
        Kind::Webhook | Kind::Sms => Answer::Delivered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_vendors_documented_algorithms() {
        // Independent HMAC-SHA256 test vector (RFC 4231 case 2): key "Jefe".
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // 钉钉: the string to sign is "{ts}\n{secret}", keyed by the secret.
        assert_eq!(
            dingtalk_sign("SEC123", 1_700_000_000_000),
            b64(&hmac(b"SEC123", b"1700000000000\nSEC123"))
        );
        // 飞书: keyed by "{ts}\n{secret}", over nothing.
        assert_eq!(
            feishu_sign("abc", 1_700_000_000),
            b64(&hmac(b"1700000000\nabc", b""))
        );
        assert!(webhook_signature("k", 5, b"{}").starts_with("sha256="));
    }

    fn target(kind: Kind) -> Target<'static> {
        static PHONES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        Target {
            kind,
            url: "http://127.0.0.1:1/hook?access_token=t",
            secret: Some("SEC"),
            phones: PHONES.get_or_init(|| vec!["13800000000".into(), "13900000000".into()]),
            template: None,
            content_type: "application/json",
        }
    }

    #[test]
    fn each_vendor_gets_its_own_body() {
        let ev = serde_json::json!({"alarm": 1});
        let r = &requests(&target(Kind::Wecom), "报警", &ev, 1)[0];
        let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(j["msgtype"], "text");
        assert_eq!(j["text"]["content"], "报警");

        let r = &requests(&target(Kind::Dingtalk), "报警", &ev, 1_700_000_000_000)[0];
        assert!(r
            .url
            .starts_with("http://127.0.0.1:1/hook?access_token=t&timestamp=1700000000000&sign="));
        assert!(!r.url.contains('+') && !r.url.ends_with('='), "{}", r.url);

        let r = &requests(&target(Kind::Feishu), "报警", &ev, 1_700_000_000_123)[0];
        let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(j["timestamp"], "1700000000");
        assert_eq!(j["sign"], feishu_sign("SEC", 1_700_000_000));
        assert_eq!(j["content"]["text"], "报警");

        let r = &requests(&target(Kind::Webhook), "报警", &ev, 9)[0];
        let sig = r
            .headers
            .iter()
            .find(|(k, _)| k == "x-fire-signature")
            .unwrap();
        assert_eq!(sig.1, webhook_signature("SEC", 9, &r.body));

        // SMS: one request per phone, values escaped for the body's type.
        let rs = requests(&target(Kind::Sms), "报警 \"A\"", &ev, 1);
        assert_eq!(rs.len(), 2);
        let j: serde_json::Value = serde_json::from_slice(&rs[1].body).unwrap();
        assert_eq!(j["phone"], "13900000000");
        assert_eq!(j["text"], "报警 \"A\"");
        let mut form = target(Kind::Sms);
        form.template = Some("to={phone}&msg={text}");
        form.content_type = "application/x-www-form-urlencoded";
        let rs = requests(&form, "a&b=c", &ev, 1);
        assert_eq!(
            String::from_utf8(rs[0].body.clone()).unwrap(),
            "to=13800000000&msg=a%26b%3Dc"
        );
    }

    #[test]
    fn answers_are_read_by_each_vendors_codes() {
        use Answer::*;
        let a = |k, s, b: &str| answer(k, s, b.as_bytes());
        assert_eq!(
            a(Kind::Wecom, 200, r#"{"errcode":0,"errmsg":"ok"}"#),
            Delivered
        );
        assert!(matches!(
            a(
                Kind::Wecom,
                200,
                r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#
            ),
            RateLimited(_)
        ));
        assert!(matches!(
            a(
                Kind::Dingtalk,
                200,
                r#"{"errcode":130101,"errmsg":"send too fast"}"#
            ),
            RateLimited(_)
        ));
        assert!(matches!(
            a(
                Kind::Dingtalk,
                200,
                r#"{"errcode":310000,"errmsg":"sign not match"}"#
            ),
            Refused(_)
        ));
        assert!(matches!(
            a(
                Kind::Feishu,
                200,
                r#"{"code":19021,"msg":"sign match fail"}"#
            ),
            Refused(_)
        ));
        assert!(matches!(
            a(
                Kind::Feishu,
                200,
                r#"{"code":11232,"msg":"frequency limited"}"#
            ),
            RateLimited(_)
        ));
        assert_eq!(
            a(Kind::Feishu, 200, r#"{"code":0,"msg":"success"}"#),
            Delivered
        );
        assert!(matches!(a(Kind::Webhook, 429, ""), RateLimited(_)));
        assert!(matches!(a(Kind::Webhook, 503, "busy"), Failed(_)));
        assert!(matches!(a(Kind::Sms, 401, ""), Refused(_)));
        assert!(matches!(a(Kind::Wecom, 200, "<html>"), Failed(_)));
    }
}
