//! User administration (用户管理) for administrators: list users, disable
//! or enable one, set a new password, close every session of one. The same
//! operations as `gateway user list|disable|enable|passwd|sessions revoke`;
//! every change is audited with the administrator's name, and disabling,
//! a new password and revocation end the user's sessions at once (their
//! open event streams close at the next check).

use super::{bad_request, path_of, ApiError, AppState, Caller, ErrorBody};
use crate::api::openapi::{BadRequest, Forbidden, NotFound};
use crate::store::{UserAdminError, UserRow};
use crate::tickets::Role;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

fn admin_only(user: &crate::auth::User) -> Result<(), ApiError> {
    if user.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            "只有管理员可以管理用户".into(),
        ))
    }
}

fn user_not_found(login: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("用户 {login} 不存在"),
    )
}

impl From<UserAdminError> for ApiError {
    fn from(e: UserAdminError) -> Self {
        match e {
            UserAdminError::NotFound => user_not_found(""),
            UserAdminError::Password(p) => bad_request("密码", p),
            UserAdminError::Store(e) => e.into(),
        }
    }
}

fn by(user: &crate::auth::User) -> crate::store::By<'_> {
    crate::store::By {
        name: &user.name,
        role: crate::auth::role_code(user.role),
    }
}

async fn row(s: &AppState, login: &str) -> Result<Json<UserRow>, ApiError> {
    s.store
        .user_row(login, crate::domain::time::now_ms())
        .await?
        .map(Json)
        .ok_or_else(|| user_not_found(login))
}

fn named(e: UserAdminError, login: &str) -> ApiError {
    match e {
        UserAdminError::NotFound => user_not_found(login),
        e => e.into(),
    }
}

/// Every user with role, sites, whether disabled and live sessions (administrators only).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "auth",
    responses(
        (status = OK, description = "Users", body = Vec<UserRow>),
        (status = FORBIDDEN, response = Forbidden),
    )
)]
pub(super) async fn users(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
) -> Result<Json<Vec<UserRow>>, ApiError> {
    admin_only(&user)?;
    Ok(Json(s.store.users(crate::domain::time::now_ms()).await?))
}

/// Disable (停用) a user: it cannot log in, and every session of it ends now.
#[utoipa::path(
    post,
    path = "/api/v1/users/{login}/disable",
    tag = "auth",
    params(("login" = String, Path, description = "The user's login")),
    responses(
        (status = OK, description = "The user, disabled", body = UserRow),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, response = NotFound),
        (status = CONFLICT, description = "An administrator cannot disable their own account (`own_account`)", body = ErrorBody),
    )
)]
pub(super) async fn disable_user(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    login: Result<Path<String>, PathRejection>,
) -> Result<Json<UserRow>, ApiError> {
    admin_only(&user)?;
    let login = path_of(login)?;
    if login == user.login {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "own_account",
            "不能停用自己的账号".into(),
        ));
    }
    s.store
        .set_disabled(&login, true, by(&user), crate::domain::time::now_ms())
        .await
        .map_err(|e| named(e, &login))?;
    row(&s, &login).await
}

/// Enable (启用) a disabled user again.
#[utoipa::path(
    post,
    path = "/api/v1/users/{login}/enable",
    tag = "auth",
    params(("login" = String, Path, description = "The user's login")),
    responses(
        (status = OK, description = "The user, enabled", body = UserRow),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, response = NotFound),
    )
)]
pub(super) async fn enable_user(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    login: Result<Path<String>, PathRejection>,
) -> Result<Json<UserRow>, ApiError> {
    admin_only(&user)?;
    let login = path_of(login)?;
    s.store
        .set_disabled(&login, false, by(&user), crate::domain::time::now_ms())
        .await
        .map_err(|e| named(e, &login))?;
    row(&s, &login).await
}

/// A new password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewPassword)]
pub(super) struct PasswordBody {
    /// At least 8 characters.
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

/// Set a user's password (重置密码); every session of the user ends.
#[utoipa::path(
    post,
    path = "/api/v1/users/{login}/password",
    tag = "auth",
    params(("login" = String, Path, description = "The user's login")),
    request_body = PasswordBody,
    responses(
        (status = OK, description = "The user", body = UserRow),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, response = NotFound),
    )
)]
pub(super) async fn set_password(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    login: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<Json<UserRow>, ApiError> {
    admin_only(&user)?;
    let login = path_of(login)?;
    let body: PasswordBody = serde_json::from_slice(&body).map_err(|e| bad_request("请求体", e))?;
    if body.password.chars().count() < crate::auth::MIN_PASSWORD || body.password.len() > 1024 {
        return Err(bad_request(
            "密码",
            format!("长度须为 {} 到 1024 个字符", crate::auth::MIN_PASSWORD),
        ));
    }
    s.store
        .set_password(
            &login,
            &body.password,
            by(&user),
            crate::domain::time::now_ms(),
        )
        .await
        .map_err(|e| named(e, &login))?;
    row(&s, &login).await
}

/// How many sessions were closed.
#[derive(Serialize, ToSchema)]
#[schema(as = SessionsRevoked)]
pub(super) struct Revoked {
    closed: u64,
}

/// Close every session of a user (强制下线): its tokens get 401 from now on.
#[utoipa::path(
    post,
    path = "/api/v1/users/{login}/sessions/revoke",
    tag = "auth",
    params(("login" = String, Path, description = "The user's login")),
    responses(
        (status = OK, description = "Sessions closed", body = Revoked),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, response = NotFound),
    )
)]
pub(super) async fn revoke_sessions(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    login: Result<Path<String>, PathRejection>,
) -> Result<Json<Revoked>, ApiError> {
    admin_only(&user)?;
    let login = path_of(login)?;
    let closed = s
        .store
        .revoke_sessions(&login, by(&user), crate::domain::time::now_ms())
        .await
        .map_err(|e| named(e, &login))?;
    Ok(Json(Revoked { closed }))
}
