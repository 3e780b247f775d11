//! Sites and nodes: the configured sites (institutions) and their nodes,
//! and the registration endpoints (安装调试): sites, nodes, node
//! credentials. Registration is for installers (安装人员) and
//! administrators only, within their sites; every change audited (by
//! `crate::commissioning::registry`) and put in force at once.

use super::{bad_request, path_of, within, ApiError, AppState, Caller};
use crate::api::openapi::{BadRequest, Forbidden, NotFound};
use crate::commissioning::registry::{
    Actor, ChannelSpec, Issued, Location, NewNode, NodeListing, RegError, RegisteredNode,
    RegisteredSite,
};
use crate::tickets::Role;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

fn may_register(user: &crate::auth::User, site: &str) -> Result<(), ApiError> {
    if !matches!(user.role, Role::Installer | Role::Admin) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            "只有安装人员或管理员可以登记机构、节点和接入凭据".into(),
        ));
    }
    within(user, site)
}

impl From<RegError> for ApiError {
    fn from(e: RegError) -> Self {
        let (status, code) = match &e {
            RegError::Invalid { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            RegError::DuplicateSite(..) | RegError::DuplicateNode { .. } => {
                (StatusCode::CONFLICT, "duplicate")
            }
            RegError::UnknownSite(_) | RegError::UnknownNode(..) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            RegError::Revoked(..) => (StatusCode::CONFLICT, "revoked"),
            RegError::Store(_) | RegError::Random(_) => {
                tracing::error!(error = %e, "registration failed");
                return ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "数据库暂不可用，请稍后重试".into(),
                );
            }
        };
        ApiError(status, code, e.to_string())
    }
}

fn actor(user: &crate::auth::User) -> Actor<'_> {
    Actor {
        name: &user.login,
        role: crate::auth::role_code(user.role),
    }
}

/// Puts a change in force now; if that fails the store poll catches up.
async fn in_force(s: &AppState) {
    if let Err(e) = s.live.reload().await {
        tracing::warn!(error = %e, "registration saved; reload deferred to the next poll");
    }
}

/// A site to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewSite)]
pub(super) struct SiteBody {
    /// `[a-z0-9_-]{1,32}`, e.g. `home_c`.
    id: String,
    /// Display name, e.g. 康宁养老院.
    name: String,
}

/// Add a site (机构); installers and administrators, within their sites.
#[utoipa::path(
    post,
    path = "/api/v1/sites",
    tag = "registration",
    request_body = SiteBody,
    responses(
        (status = CREATED, description = "The site, registered", body = RegisteredSite),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
        (status = CONFLICT, description = "The id is taken (`duplicate`)", body = super::ErrorBody),
    )
)]
pub(super) async fn add_site(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    body: Result<Json<SiteBody>, JsonRejection>,
) -> Result<(StatusCode, Json<RegisteredSite>), ApiError> {
    let Json(b) = body.map_err(|e| bad_request("请求内容", e.body_text()))?;
    may_register(&user, &b.id)?;
    let site = crate::commissioning::registry::add_site(
        &s.store,
        s.live.base(),
        &b.id,
        &b.name,
        actor(&user),
        crate::domain::time::now_ms(),
    )
    .await?;
    in_force(&s).await;
    Ok((StatusCode::CREATED, Json(site)))
}

/// A node to register.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewNode)]
pub(super) struct NodeBody {
    /// `[a-z0-9_-]{1,32}`, e.g. `n07`.
    id: String,
    location: Location,
    channels: Vec<ChannelSpec>,
}

/// A node registered, with its credentials.
#[derive(Serialize, ToSchema)]
#[schema(as = NodeAdded)]
pub(super) struct NodeAdded {
    node: RegisteredNode,
    /// Shown only in this answer: note the password now.
    credentials: Issued,
    /// The node's provisioning artefact (节点配置文件, `wire::provision`
    /// format: broker, these credentials, channels, setpoints), base64 —
    /// the only moment it can be made, since the password is not kept.
    artefact_base64: Option<String>,
    /// Why no artefact could be made (e.g. a sensor the node has no input
    /// for); the node is registered all the same.
    artefact_error: Option<String>,
    /// The label text for a QR code, e.g. `FN1:HOME.C/N07:NI`.
    label: Option<String>,
}

/// Register a node with its location and channels; returns its MQTT credentials once.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/nodes",
    tag = "registration",
    params(("site" = String, Path, description = "The site's id")),
    request_body = NodeBody,
    responses(
        (status = CREATED, description = "The node, registered, and its credentials (shown once)", body = NodeAdded),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, response = NotFound),
        (status = CONFLICT, description = "The node id is taken (`duplicate`)", body = super::ErrorBody),
    )
)]
pub(super) async fn add_node(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    site: Result<Path<String>, PathRejection>,
    body: Result<Json<NodeBody>, JsonRejection>,
) -> Result<(StatusCode, Json<NodeAdded>), ApiError> {
    let site = path_of(site)?;
    may_register(&user, &site)?;
    let Json(b) = body.map_err(|e| bad_request("请求内容", e.body_text()))?;
    let new = NewNode {
        site,
        id: b.id,
        location: b.location,
        channels: b.channels,
    };
    let (node, credentials) = crate::commissioning::registry::add_node(
        &s.store,
        s.live.base(),
        &new,
        actor(&user),
        crate::domain::time::now_ms(),
    )
    .await?;
    in_force(&s).await;
    let artefact = match crate::commissioning::artefact::broker_addr(&s.live.config(), None) {
        Ok((host, port)) => match s.store.setpoints_in_force().await {
            Ok(applied) => crate::commissioning::artefact::for_node(
                &s.live.config(),
                &applied,
                &node,
                &credentials,
                (&host, port),
            ),
            Err(e) => Err(format!("无法读取定值：{e}")),
        },
        Err(e) => Err(e),
    };
    use base64::Engine as _;
    let (artefact_base64, artefact_error) = match artefact {
        Ok(bytes) => (
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            None,
        ),
        Err(e) => (None, Some(e)),
    };
    Ok((
        StatusCode::CREATED,
        Json(NodeAdded {
            label: crate::commissioning::artefact::label(&node.site, &node.id),
            node,
            credentials,
            artefact_base64,
            artefact_error,
        }),
    ))
}

/// The nodes of a site: from the configuration file and registered, with their credential state.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/nodes",
    tag = "registration",
    params(("site" = String, Path, description = "The site's id")),
    responses(
        (status = OK, description = "Nodes", body = Vec<NodeListing>),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
    )
)]
pub(super) async fn list_nodes(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    site: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<NodeListing>>, ApiError> {
    let site = path_of(site)?;
    may_register(&user, &site)?;
    Ok(Json(
        crate::commissioning::registry::list(&s.store, s.live.base(), Some(&site)).await?,
    ))
}

/// Issue new MQTT credentials to a node (the old password stops working and its connection is closed); returns them once.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/nodes/{node}/credentials",
    tag = "registration",
    params(
        ("site" = String, Path, description = "The site's id"),
        ("node" = String, Path, description = "The node's id"),
    ),
    responses(
        (status = OK, description = "The new credentials (shown once)", body = Issued),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, response = NotFound),
        (status = CONFLICT, description = "The node is revoked (`revoked`)", body = super::ErrorBody),
    )
)]
pub(super) async fn rotate_credentials(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Issued>, ApiError> {
    let (site, node) = path_of(ids)?;
    may_register(&user, &site)?;
    let issued = crate::commissioning::registry::rotate(
        &s.store,
        s.live.base(),
        &site,
        &node,
        actor(&user),
        crate::domain::time::now_ms(),
    )
    .await?;
    in_force(&s).await;
    Ok(Json(issued))
}

/// Revoke (注销) a node: its credentials stop working and its connection is closed.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{site}/nodes/{node}/revoke",
    tag = "registration",
    params(
        ("site" = String, Path, description = "The site's id"),
        ("node" = String, Path, description = "The node's id"),
    ),
    responses(
        (status = NO_CONTENT, description = "Revoked"),
        (status = BAD_REQUEST, response = BadRequest),
        (status = FORBIDDEN, response = Forbidden),
        (status = NOT_FOUND, response = NotFound),
        (status = CONFLICT, description = "Already revoked (`revoked`)", body = super::ErrorBody),
    )
)]
pub(super) async fn revoke_node(
    State(s): State<AppState>,
    axum::Extension(user): Caller,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (site, node) = path_of(ids)?;
    may_register(&user, &site)?;
    crate::commissioning::registry::revoke(
        &s.store,
        s.live.base(),
        &site,
        &node,
        actor(&user),
        crate::domain::time::now_ms(),
    )
    .await?;
    in_force(&s).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A site (institution, 机构) and its nodes.
#[derive(Serialize, ToSchema)]
#[schema(as = Site)]
pub(super) struct SiteView<'a> {
    id: &'a str,
    name: &'a str,
    nodes: Vec<NodeView<'a>>,
}

/// A sensor node and where it is.
#[derive(Serialize, ToSchema)]
#[schema(as = Node)]
pub(super) struct NodeView<'a> {
    id: &'a str,
    /// 楼栋/楼层/房间/配电箱.
    location: &'a str,
}

/// Configured sites (institutions) and their nodes.
#[utoipa::path(
    get,
    path = "/api/v1/sites",
    tag = "sites",
    responses((status = OK, description = "Sites", body = Vec<SiteView>)),
)]
pub(super) async fn sites(State(s): State<AppState>, axum::Extension(user): Caller) -> Response {
    let config = s.live.config();
    let sites: Vec<SiteView> = config
        .sites
        .iter()
        .filter(|site| user.covers(&site.id))
        .map(|site| SiteView {
            id: &site.id,
            name: &site.name,
            nodes: site
                .nodes
                .iter()
                .map(|n| NodeView {
                    id: &n.id,
                    location: &n.location,
                })
                .collect(),
        })
        .collect();
    Json(sites).into_response()
}
