//! Attaching evidence to a ticket (整改佐证), within limits: only the roles
//! of the closed loop ([`crate::tickets::evidence::may_attach`]), within the
//! ticket's and the gateway's quotas ([`crate::tickets::evidence::check_quota`]).
//! Every check that needs no body is made before a byte of it is read, so
//! a caller who may not attach cannot make the gateway buffer 10 MiB; at
//! most [`READERS`] bodies are read at once, each within [`BODY_TIMEOUT`];
//! the quota check, the file's write and its record are one step at a time
//! (two uploads cannot both take the last of a quota).

use super::tickets::ticket_in_jurisdiction;
use super::{bad_request, path_id, ApiError, AppState, Caller, ErrorBody};
use crate::api::openapi::{BadRequest, Binary, Forbidden, NotFound};
use crate::metrics::inc;
use crate::tickets::evidence::{self, QuotaExceeded};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};
use utoipa::{IntoParams, ToSchema};

/// Evidence bodies read at once (10 MiB each at most).
pub const READERS: usize = 4;

/// The longest an evidence body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(120);

static READING: Semaphore = Semaphore::const_new(READERS);
static STORING: Mutex<()> = Mutex::const_new(());

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EvidenceParams {
    /// Caption of a file.
    #[param(max_length = 2000)]
    note: Option<String>,
}

/// A note as evidence.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EvidenceNote {
    #[schema(min_length = 1, max_length = 2000)]
    note: String,
}

fn quota_refused(s: &AppState, q: QuotaExceeded) -> ApiError {
    inc(&s.metrics.http_limits.evidence_quota_refused);
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        "quota_exceeded",
        q.message().into(),
    )
}

fn too_large() -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "文件不能超过 10 MiB".into(),
    )
}

/// Attach evidence (整改佐证): a JSON note, or a photo/document as the body (image/jpeg, image/png, image/webp, application/pdf; ≤ 10 MiB), stored by SHA-256.
///
/// The body is the file itself, not a multipart form; its bytes must be
/// what its `Content-Type` says. Only duty officers, site managers and
/// inspectors attach evidence; a ticket holds at most 200 entries, 50
/// files and 200 MiB, and the gateway `http.evidence_quota_mib` of files.
#[utoipa::path(
    post,
    path = "/api/v1/tickets/{id}/evidence",
    tag = "tickets",
    params(("id" = i64, Path, description = "The ticket's id"), EvidenceParams),
    request_body(content(
        (EvidenceNote = "application/json"),
        (inline(Binary) = "image/jpeg"),
        (inline(Binary) = "image/png"),
        (inline(Binary) = "image/webp"),
        (inline(Binary) = "application/pdf"),
    )),
    responses(
        (status = OK, description = "Recorded", body = crate::store::EvidenceRow),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, response = NotFound),
        (
            status = REQUEST_TIMEOUT,
            description = "The body did not arrive in time (`body_timeout`)",
            body = super::ErrorBody
        ),
        (
            status = PAYLOAD_TOO_LARGE,
            description = "Over 10 MiB (`too_large`), or the ticket's or the gateway's evidence quota is used up (`quota_exceeded`)",
            body = super::ErrorBody
        ),
        (
            status = UNSUPPORTED_MEDIA_TYPE,
            description = "Not a JPEG/PNG/WebP/PDF, or not what it claims (`bad_media_type`)",
            body = super::ErrorBody
        ),
        (
            status = SERVICE_UNAVAILABLE,
            description = "Storage unavailable (`storage_unavailable`), or the database (`store_unavailable`)",
            body = super::ErrorBody
        ),
    )
)]
pub(super) async fn add_evidence(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<EvidenceParams>, QueryRejection>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<crate::store::EvidenceRow>, ApiError> {
    let id = path_id(id)?;
    let Query(q) = q.map_err(|e| bad_request("查询参数", e.body_text()))?;
    ticket_in_jurisdiction(&s, &user, id).await?;
    if !evidence::may_attach(user.role) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            "只有值班员、机构负责人或民政局监管人员可以上传整改佐证".into(),
        ));
    }
    let quota = s.config.http.evidence_quota_mib.saturating_mul(1024 * 1024);
    let role = crate::auth::role_code(user.role);
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let is_note = media.starts_with("application/json");
    // A ticket already full is refused before its body is read.
    let usage = s.store.evidence_usage(id).await?;
    let probe = (!is_note).then_some((0, false));
    evidence::check_quota(usage, probe, quota).map_err(|e| quota_refused(&s, e))?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > evidence::MAX_BYTES as u64) {
        return Err(too_large());
    }
    let body = {
        let _reading = READING.acquire().await.map_err(|_| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "文件暂时无法保存，请稍后重试".into(),
            )
        })?;
        match tokio::time::timeout(
            BODY_TIMEOUT,
            axum::body::to_bytes(body, evidence::MAX_BYTES + 1),
        )
        .await
        {
            Err(_) => {
                return Err(ApiError(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "上传超时，请重试".into(),
                ))
            }
            Ok(Err(e)) => {
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(c) = cause {
                    if c.is::<http_body_util::LengthLimitError>() {
                        return Err(too_large());
                    }
                    cause = c.source();
                }
                return Err(bad_request("请求体", "上传中断，请重试"));
            }
            Ok(Ok(b)) if b.len() > evidence::MAX_BYTES => return Err(too_large()),
            Ok(Ok(b)) => b,
        }
    };
    let now = crate::domain::time::now_ms();
    let row = if is_note {
        let n: EvidenceNote =
            serde_json::from_slice(&body).map_err(|e| bad_request("请求体", e))?;
        let note = n.note.trim();
        if note.is_empty() || note.chars().count() > 2000 {
            return Err(bad_request("说明", "须为 1–2000 个字符"));
        }
        let _one_at_a_time = STORING.lock().await;
        let usage = s.store.evidence_usage(id).await?;
        evidence::check_quota(usage, None, quota).map_err(|e| quota_refused(&s, e))?;
        s.store
            .add_evidence(id, &user.name, role, None, note, now)
            .await?
    } else {
        let Some(actual) = evidence::sniff(&media, &body) else {
            return Err(ApiError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_media_type",
                "只接受 JPEG、PNG、WebP 照片或 PDF 文件，且内容须与声明的类型一致".into(),
            ));
        };
        let note = q.note.unwrap_or_default();
        if note.chars().count() > 2000 {
            return Err(bad_request("说明", "最多 2000 个字符"));
        }
        let _one_at_a_time = STORING.lock().await;
        let usage = s.store.evidence_usage(id).await?;
        let new = !s.store.evidence_hash_known(&evidence::hash(&body)).await?;
        evidence::check_quota(usage, Some((body.len() as u64, new)), quota)
            .map_err(|e| quota_refused(&s, e))?;
        let hash = evidence::store(&s.config.storage.data_dir, &body)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot store an evidence file");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "文件暂时无法保存，请稍后重试".into(),
                )
            })?;
        s.store
            .add_evidence(
                id,
                &user.name,
                role,
                Some((actual, body.len() as i64, &hash)),
                note.trim(),
                now,
            )
            .await?
    };
    Ok(Json(row))
}

/// An evidence file by its SHA-256, for callers covering a ticket it belongs to.
#[utoipa::path(
    get,
    path = "/api/v1/evidence/{hash}",
    tag = "tickets",
    params((
        "hash" = String,
        Path,
        pattern = "^[0-9a-f]{64}$",
        description = "The file's SHA-256, lower-case hex"
    )),
    responses(
        (status = OK, description = "The file", content(
            (inline(Binary) = "image/jpeg"),
            (inline(Binary) = "image/png"),
            (inline(Binary) = "image/webp"),
            (inline(Binary) = "application/pdf"),
        )),
        (status = NOT_FOUND, description = "No such file on a ticket within your jurisdiction (`not_found`)", body = ErrorBody),
    )
)]
pub(super) async fn evidence_file(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError(StatusCode::NOT_FOUND, "not_found", "文件不存在".into());
    if !crate::tickets::evidence::is_hash(&hash) {
        return Err(not_found());
    }
    let (media, sites) = s.store.evidence_file(&hash).await?.ok_or_else(not_found)?;
    // Outside the jurisdiction = not found: a 403 would tell that the file
    // exists (and name its site).
    if !sites.iter().any(|site| user.covers(site)) {
        return Err(not_found());
    }
    // Re-hashed before it is served: a damaged file is not evidence.
    let bytes = crate::tickets::evidence::read_verified(&s.config.storage.data_dir, &hash)
        .await
        .ok()
        .flatten()
        .ok_or_else(not_found)?;
    Ok(([(header::CONTENT_TYPE, media)], bytes).into_response())
}
