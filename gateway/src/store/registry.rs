//! Rows of the node registry (节点登记) and node credentials. Every change
//! bumps `registry_version` and appends an audit record in the same
//! transaction; checks that need the configuration file are made by
//! `crate::commissioning::registry` before it calls these.

use super::audit::{append_audit, AuditEntry};
use super::{query, query_as, query_scalar, Store, StoreError};
use serde::{Deserialize, Serialize};

/// Where a node is fitted (安装位置).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// 楼栋, e.g. 1号楼.
    pub building: String,
    /// 楼层, e.g. 2层.
    pub floor: String,
    /// 房间, e.g. 201.
    pub room: String,
    /// 配电箱, e.g. AL-2.
    pub panel: String,
}

impl Location {
    /// For people: `1号楼 2层 201 配电箱AL-2`.
    pub fn display(&self) -> String {
        format!(
            "{} {} {} 配电箱{}",
            self.building, self.floor, self.room, self.panel
        )
    }
}

/// One measuring channel of a node (回路/通道).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// Channel id on the wire, `[a-z0-9_]{1,16}`, e.g. `rc1`.
    pub id: String,
    /// Wire quantity, e.g. `residual_current`, `temperature`.
    pub quantity: String,
    /// Current transformer ratio (互感器变比) for CT-measured quantities
    /// (`residual_current`, `current`), e.g. 1000 for 1000:1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ct_ratio: Option<u32>,
    /// Sensor type of other quantities, e.g. `ntc`, `pt100`, `4-20ma`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
}

/// A registered site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RegisteredSite {
    pub id: String,
    pub name: String,
    pub created_by: String,
    pub created_at: u64,
}

/// A registered node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RegisteredNode {
    pub site: String,
    pub id: String,
    pub location: Location,
    pub channels: Vec<ChannelSpec>,
    pub created_by: String,
    pub created_at: u64,
    /// When the node was revoked (注销), ms since the epoch.
    pub revoked_at: Option<u64>,
}

/// A node's MQTT credential: the username and the `$7$` hash of its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub site: String,
    pub node: String,
    pub password_hash: String,
    pub created_at: u64,
    pub rotated_at: u64,
    pub revoked_at: Option<u64>,
}

/// Everything registered, as read from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    pub version: i64,
    pub sites: Vec<RegisteredSite>,
    pub nodes: Vec<RegisteredNode>,
    pub credentials: Vec<Credential>,
    /// Node certificates issued by the node CA (`crate::commissioning::ca`), one per node.
    pub certificates: Vec<NodeCertificate>,
}

/// The client certificate a node was last issued: the gate accepts a
/// certificate of the node CA only by this fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCertificate {
    pub username: String,
    pub site: String,
    pub node: String,
    /// SHA-256 of the certificate's DER, lower-case hex.
    pub sha256: String,
    pub serial: String,
    /// Valid until, ms since the epoch.
    pub not_after: u64,
    pub issued_at: u64,
}

/// What the store keeps of a certificate issued to a node (never its key).
#[derive(Debug, Clone, Copy)]
pub struct CertIssued<'a> {
    /// SHA-256 of the certificate's DER, lower-case hex.
    pub sha256: &'a str,
    /// Serial, hex.
    pub serial: &'a str,
    /// Valid until, seconds since the epoch.
    pub not_after_secs: u64,
}

/// The configuration in force: the file's, plus registered sites and the
/// registered nodes that are not revoked. The file wins a collision (an id
/// added to the file after it was registered); the registered node is then
/// left out and logged.
pub fn effective(base: &crate::config::Config, reg: &Registry) -> crate::config::Config {
    let mut config = base.clone();
    for s in &reg.sites {
        if config.sites.iter().all(|c| c.id != s.id) {
            config.sites.push(crate::config::SiteConfig {
                id: s.id.clone(),
                name: s.name.clone(),
                ..Default::default()
            });
        }
    }
    for n in reg.nodes.iter().filter(|n| n.revoked_at.is_none()) {
        let Some(site) = config.sites.iter_mut().find(|s| s.id == n.site) else {
            tracing::warn!(site = %n.site, node = %n.id, "registered node of an unknown site left out");
            continue;
        };
        if site.nodes.iter().any(|c| c.id == n.id) {
            tracing::warn!(site = %n.site, node = %n.id, "registered node also in the configuration file; the file's entry is used");
            continue;
        }
        site.nodes.push(crate::config::NodeConfig {
            id: n.id.clone(),
            location: n.location.display(),
            channels: n
                .channels
                .iter()
                .map(|c| crate::config::ChannelConfig {
                    id: c.id.clone(),
                    quantity: Some(c.quantity.clone()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
    }
    config
}

/// Who registers: a user's login and role code, or `cli` at the machine.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub role: &'a str,
}

type NodeRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
);

type CredentialRow = (String, String, String, String, i64, i64, Option<i64>);

type CertificateRow = (String, String, String, String, String, i64, i64);

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

async fn bump(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), StoreError> {
    query("UPDATE registry_version SET version = version + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// The registry's version: changes with every registration, rotation
    /// or revocation.
    pub async fn registry_version(&self) -> Result<i64, StoreError> {
        Ok(
            query_scalar("SELECT version FROM registry_version WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Everything registered, with the version it was read at.
    pub async fn registry(&self) -> Result<Registry, StoreError> {
        let mut tx = self.pool.begin().await?;
        let version: i64 = query_scalar("SELECT version FROM registry_version WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let sites: Vec<(String, String, String, i64)> = query_as(
            "SELECT id, name, created_by, created_at FROM registered_sites ORDER BY created_at, id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let nodes: Vec<NodeRow> = query_as(
            "SELECT site, node, building, floor, room, panel, channels, created_by, created_at, revoked_at \
             FROM registered_nodes ORDER BY created_at, site, node",
        )
        .fetch_all(&mut *tx)
        .await?;
        let credentials: Vec<CredentialRow> = query_as(
            "SELECT username, site, node, password_hash, created_at, rotated_at, revoked_at \
             FROM node_credentials ORDER BY username",
        )
        .fetch_all(&mut *tx)
        .await?;
        let certificates: Vec<CertificateRow> = query_as(
            "SELECT username, site, node, sha256, serial, not_after, issued_at \
             FROM node_certificates ORDER BY username",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut out = Registry {
            version,
            ..Default::default()
        };
        out.sites = sites
            .into_iter()
            .map(|(id, name, created_by, at)| RegisteredSite {
                id,
                name,
                created_by,
                created_at: at.max(0) as u64,
            })
            .collect();
        for (site, node, building, floor, room, panel, channels, created_by, at, revoked) in nodes {
            let channels = match serde_json::from_str(&channels) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%site, %node, error = %e, "registered node's channels unreadable; listed without channels");
                    Vec::new()
                }
            };
            out.nodes.push(RegisteredNode {
                site,
                id: node,
                location: Location {
                    building,
                    floor,
                    room,
                    panel,
                },
                channels,
                created_by,
                created_at: at.max(0) as u64,
                revoked_at: revoked.map(|r| r.max(0) as u64),
            });
        }
        out.credentials = credentials
            .into_iter()
            .map(
                |(username, site, node, password_hash, created, rotated, revoked)| Credential {
                    username,
                    site,
                    node,
                    password_hash,
                    created_at: created.max(0) as u64,
                    rotated_at: rotated.max(0) as u64,
                    revoked_at: revoked.map(|r| r.max(0) as u64),
                },
            )
            .collect();
        out.certificates = certificates
            .into_iter()
            .map(
                |(username, site, node, sha256, serial, not_after, issued_at)| NodeCertificate {
                    username,
                    site,
                    node,
                    sha256,
                    serial,
                    not_after: not_after.max(0) as u64,
                    issued_at: issued_at.max(0) as u64,
                },
            )
            .collect();
        Ok(out)
    }

    /// Records the certificate just issued to a node, replacing its
    /// previous one (which the gate then refuses). `at`: ms since the epoch.
    pub async fn set_node_certificate(
        &self,
        site: &str,
        node: &str,
        cert: CertIssued<'_>,
        actor: Actor<'_>,
        at: u64,
    ) -> Result<(), StoreError> {
        let username = crate::domain::ids::node_username(site, node);
        let not_after = cert.not_after_secs.saturating_mul(1000) as i64;
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        query(
            "INSERT INTO node_certificates (username, site, node, sha256, serial, not_after, issued_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET \
             sha256 = excluded.sha256, serial = excluded.serial, \
             not_after = excluded.not_after, issued_at = excluded.issued_at",
        )
        .bind(&username)
        .bind(site)
        .bind(node)
        .bind(cert.sha256)
        .bind(cert.serial)
        .bind(not_after)
        .bind(at as i64)
        .execute(&mut *tx)
        .await?;
        bump(&mut tx).await?;
        let entry = AuditEntry {
            at,
            actor: actor.name,
            role: actor.role,
            action: "node.certificate.issue",
            subject: format!("node:{site}/{node}"),
            details: serde_json::json!({
                "username": username,
                "sha256": cert.sha256,
                "serial": cert.serial,
                "not_after": not_after,
            })
            .to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds a site; `false` if the id is already registered.
    pub async fn add_registered_site(
        &self,
        site: &RegisteredSite,
        role: &str,
    ) -> Result<bool, StoreError> {
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let inserted = query(
            "INSERT INTO registered_sites (id, name, created_by, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&site.id)
        .bind(&site.name)
        .bind(&site.created_by)
        .bind(site.created_at as i64)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Ok(false),
            r => r?,
        };
        bump(&mut tx).await?;
        let entry = AuditEntry {
            at: site.created_at,
            actor: &site.created_by,
            role,
            action: "site.add",
            subject: format!("site:{}", site.id),
            details: serde_json::json!({ "name": site.name }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Adds a node and its credential (the password's `$7$` hash); `false`
    /// if the node id or its username is already taken.
    pub async fn add_registered_node(
        &self,
        node: &RegisteredNode,
        password_hash: &str,
        role: &str,
    ) -> Result<bool, StoreError> {
        let channels = serde_json::to_string(&node.channels).unwrap_or_else(|_| "[]".into());
        let username = crate::domain::ids::node_username(&node.site, &node.id);
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let inserted = query(
            "INSERT INTO registered_nodes (site, node, building, floor, room, panel, channels, created_by, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&node.site)
        .bind(&node.id)
        .bind(&node.location.building)
        .bind(&node.location.floor)
        .bind(&node.location.room)
        .bind(&node.location.panel)
        .bind(&channels)
        .bind(&node.created_by)
        .bind(node.created_at as i64)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Ok(false),
            r => r?,
        };
        let inserted = query(
            "INSERT INTO node_credentials (username, site, node, password_hash, created_at, rotated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&username)
        .bind(&node.site)
        .bind(&node.id)
        .bind(password_hash)
        .bind(node.created_at as i64)
        .bind(node.created_at as i64)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Ok(false),
            r => r?,
        };
        bump(&mut tx).await?;
        let entry = AuditEntry {
            at: node.created_at,
            actor: &node.created_by,
            role,
            action: "node.add",
            subject: format!("node:{}/{}", node.site, node.id),
            details: serde_json::json!({
                "location": node.location,
                "channels": node.channels,
                "username": username,
            })
            .to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Sets a node's password hash (a rotation, or a node of the file's
    /// first credentials); a revoked credential becomes active again.
    pub async fn set_credential(
        &self,
        site: &str,
        node: &str,
        password_hash: &str,
        actor: Actor<'_>,
        at: u64,
    ) -> Result<(), StoreError> {
        let username = crate::domain::ids::node_username(site, node);
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        let updated = query(
            "UPDATE node_credentials SET password_hash = ?, rotated_at = ?, revoked_at = NULL WHERE username = ?",
        )
        .bind(password_hash)
        .bind(at as i64)
        .bind(&username)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            query(
                "INSERT INTO node_credentials (username, site, node, password_hash, created_at, rotated_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&username)
            .bind(site)
            .bind(node)
            .bind(password_hash)
            .bind(at as i64)
            .bind(at as i64)
            .execute(&mut *tx)
            .await?;
        }
        bump(&mut tx).await?;
        let entry = AuditEntry {
            at,
            actor: actor.name,
            role: actor.role,
            action: "node.credentials.rotate",
            subject: format!("node:{site}/{node}"),
            details: serde_json::json!({ "username": username, "first": updated == 0 }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes a node: its registration (if registered) and its credential
    /// (if any). Idempotent on rows already revoked.
    pub async fn revoke_node(
        &self,
        site: &str,
        node: &str,
        actor: Actor<'_>,
        at: u64,
    ) -> Result<(), StoreError> {
        let username = crate::domain::ids::node_username(site, node);
        let _chain = self.audit_lock.lock().await;
        let mut tx = self.begin().await?;
        query(
            "UPDATE registered_nodes SET revoked_at = ? WHERE site = ? AND node = ? AND revoked_at IS NULL",
        )
        .bind(at as i64)
        .bind(site)
        .bind(node)
        .execute(&mut *tx)
        .await?;
        // A node of the file without credentials gets a revoked one, so that
        // an anonymous login can no longer speak for it either.
        let updated = query(
            "UPDATE node_credentials SET revoked_at = ? WHERE username = ? AND revoked_at IS NULL",
        )
        .bind(at as i64)
        .bind(&username)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            query(
                "INSERT INTO node_credentials (username, site, node, password_hash, created_at, rotated_at, revoked_at) \
                 VALUES (?, ?, ?, '', ?, ?, ?) ON CONFLICT (username) DO NOTHING",
            )
            .bind(&username)
            .bind(site)
            .bind(node)
            .bind(at as i64)
            .bind(at as i64)
            .bind(at as i64)
            .execute(&mut *tx)
            .await?;
        }
        bump(&mut tx).await?;
        let entry = AuditEntry {
            at,
            actor: actor.name,
            role: actor.role,
            action: "node.revoke",
            subject: format!("node:{site}/{node}"),
            details: serde_json::json!({ "username": username }).to_string(),
        };
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(())
    }
}
