//! The bearer-token middleware in front of the protected routes, and the
//! jurisdiction checks every handler applies to the caller.

use super::{session, ApiError, AppState};
use crate::auth::User;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Resolves `Authorization: Bearer <token>` to a user, or answers 401.
pub(super) async fn authenticate(
    State(s): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let Some(token) = token else {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "请先登录".into(),
        )
        .into_response();
    };
    match s
        .store
        .user_by_token(&token, crate::domain::time::now_ms())
        .await
    {
        Ok(Some(user)) => {
            let token = session::SessionToken(token);
            req.extensions_mut().insert(user);
            req.extensions_mut().insert(token);
            next.run(req).await
        }
        Ok(None) => ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "登录已失效，请重新登录".into(),
        )
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

pub(super) type Caller = axum::Extension<User>;

pub(super) fn forbidden_site(site: &str) -> ApiError {
    ApiError(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("机构 {site} 不在您的管辖范围内"),
    )
}

pub(super) fn within(user: &User, site: &str) -> Result<(), ApiError> {
    if user.covers(site) {
        Ok(())
    } else {
        Err(forbidden_site(site))
    }
}
