//! Login and logout (登录、退出). A login attempt first asks the throttle
//! (`login_throttle`, per login and per peer address), then waits for one
//! of a few password-hashing slots, and the hash is checked on a blocking
//! thread: a flood of logins neither reaches argon2 once locked out nor
//! takes the async workers that carry alarms.

use super::login_throttle::{Throttle, Verdict};
use super::{bad_request, ApiError, AppState, ErrorBody};
use crate::api::openapi::BadRequest;
use crate::auth::User;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use utoipa::ToSchema;

/// How long a login waits for a hashing slot before it is answered 503.
const HASH_WAIT: Duration = Duration::from_secs(10);

/// Longest login name and password looked at.
const MAX_LOGIN: usize = 128;
const MAX_PASSWORD: usize = 1024;

/// The throttle and the bound on concurrent password hashes; one per router.
pub struct LoginGuard {
    throttle: Mutex<Throttle>,
    hashing: Semaphore,
}

impl Default for LoginGuard {
    fn default() -> Self {
        // Half the cores at most hash passwords (one on a 2-core box); the
        // rest stay for alarms.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        LoginGuard {
            throttle: Mutex::new(Throttle::default()),
            hashing: Semaphore::new((cores / 2).max(1)),
        }
    }
}

impl LoginGuard {
    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The bearer token of the request, put there by `authenticate`.
#[derive(Clone)]
pub struct SessionToken(pub String);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LoginRequest)]
pub(super) struct LoginBody {
    login: String,
    password: String,
}

/// A session.
#[derive(Serialize, ToSchema)]
#[schema(as = LoginReply)]
pub(super) struct LoginReply {
    /// The bearer token for `Authorization: Bearer <token>`.
    token: String,
    /// When the session ends, ms since the epoch (12 h after login).
    expires_at: u64,
    user: User,
}

fn too_many(until: u64, now: u64) -> Response {
    let secs = until.saturating_sub(now).div_ceil(1000).max(1);
    let minutes = secs.div_ceil(60);
    let mut r = ApiError(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("登录失败次数过多，请 {minutes} 分钟后再试"),
    )
    .into_response();
    if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Log in with login and password; returns a bearer token (12 h) and the user's role and sites.
///
/// Five wrong passwords for one login within 15 minutes lock it for 15
/// minutes (doubling with each further lockout), thirty from one address
/// lock the address; while locked every attempt is refused unchecked (429).
#[utoipa::path(
    post,
    path = "/api/v1/login",
    tag = "auth",
    request_body = LoginBody,
    responses(
        (status = OK, description = "Logged in", body = LoginReply),
        (status = BAD_REQUEST, response = BadRequest),
        (
            status = UNAUTHORIZED,
            description = "Wrong login or password (`bad_credentials`)",
            body = ErrorBody
        ),
        (
            status = TOO_MANY_REQUESTS,
            description = "Too many failed attempts for this login or from this address (`too_many_attempts`); `Retry-After` says when to try again",
            body = ErrorBody
        ),
        (
            status = SERVICE_UNAVAILABLE,
            description = "The database is unavailable (`store_unavailable`), or too many logins are being checked (`busy`)",
            body = ErrorBody
        ),
    )
)]
pub(super) async fn login(
    State(s): State<AppState>,
    Extension(guard): Extension<Arc<LoginGuard>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: LoginBody = serde_json::from_slice(&body).map_err(|e| bad_request("请求体", e))?;
    if body.login.len() > MAX_LOGIN || body.password.len() > MAX_PASSWORD {
        return Err(bad_request("请求体", "用户名或密码过长"));
    }
    let peer = peer.map(|Extension(ConnectInfo(a))| a.ip());
    let now = crate::domain::time::now_ms();
    let auth = &s.metrics.auth;
    if let Verdict::Locked { scope, until } = guard.throttle().begin(&body.login, peer, now) {
        auth.login(match scope {
            super::login_throttle::Scope::Login => "throttled_login",
            super::login_throttle::Scope::Peer => "throttled_peer",
        });
        return Ok(too_many(until, now));
    }
    let Ok(Ok(_slot)) = tokio::time::timeout(HASH_WAIT, guard.hashing.acquire()).await else {
        guard.throttle().abandon(&body.login, peer);
        auth.login("busy");
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "登录请求过多，请稍后重试".into(),
        ));
    };
    let result = s.store.login(&body.login, &body.password, now).await;
    let done = crate::domain::time::now_ms();
    let answer = match result {
        Err(e) => {
            guard.throttle().abandon(&body.login, peer);
            return Err(e.into());
        }
        Ok(answer) => answer,
    };
    let locked = guard
        .throttle()
        .finish(&body.login, peer, answer.is_some(), done);
    for scope in locked {
        auth.lockout(scope == super::login_throttle::Scope::Peer);
        tracing::warn!(
            scope = scope.code(),
            // Debug-quoted: a login with line breaks cannot forge log lines.
            login = ?body.login.chars().take(64).collect::<String>(),
            peer = ?peer,
            "repeated failed logins: locked"
        );
    }
    match answer {
        Some((token, user)) => {
            auth.login("ok");
            Ok(Json(LoginReply {
                token,
                expires_at: now + crate::auth::SESSION_MS,
                user,
            })
            .into_response())
        }
        None => {
            auth.login("bad_credentials");
            Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "用户名或密码错误".into(),
            ))
        }
    }
}

/// Log out: the token stops working at once (its session is deleted), and
/// event streams opened with it close at their next check.
#[utoipa::path(
    post,
    path = "/api/v1/logout",
    tag = "auth",
    responses((status = NO_CONTENT, description = "Logged out")),
)]
pub(super) async fn logout(
    State(s): State<AppState>,
    Extension(SessionToken(token)): Extension<SessionToken>,
) -> Result<StatusCode, ApiError> {
    s.store.logout(&token).await?;
    Ok(StatusCode::NO_CONTENT)
}
