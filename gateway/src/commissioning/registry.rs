//! Node registration (节点登记): sites and nodes an installer (安装人员)
//! adds on site, without editing the configuration file, each node with its
//! location (楼栋/楼层/房间/配电箱), its channels (CT ratio or sensor type)
//! and its own MQTT credentials.
//!
//! The configuration in force is the file's sites and nodes plus the
//! registered ones ([`effective`]); a registered id that collides with
//! either is refused. Validation and the merge are pure; the operations at
//! the end ([`add_site`], [`add_node`], [`rotate`], [`revoke`], [`list`])
//! are the one path the CLI and the API both take, so both check the same
//! things and leave the same audit records.

use crate::config::Config;
use crate::store::{Store, StoreError};
use serde::Serialize;
use wire::{ChannelId, NodeId, Quantity, SiteId};

// The registry's rows are the store's (`store::registry`); their checks
// and the configuration they make are here.
pub use crate::store::registry::{
    Actor, ChannelSpec, Credential, Location, NodeCertificate, RegisteredNode, RegisteredSite,
    Registry,
};

/// Longest location field or site name, in characters.
pub const MAX_FIELD_CHARS: usize = 32;
/// Most channels a registered node may declare (the wire contract's limit).
pub const MAX_CHANNELS: usize = 32;
/// Largest CT ratio accepted (a zero-sequence CT is typically 1000:1 – 2000:1).
pub const MAX_CT_RATIO: u32 = 100_000;

/// Why a registration was refused. The text is for installers (简体中文)
/// and names the field or the id at fault.
#[derive(Debug, thiserror::Error)]
pub enum RegError {
    #[error("{field}：{message}")]
    Invalid { field: String, message: String },
    #[error("机构编号 {0} 已存在（{1}），不能重复添加")]
    DuplicateSite(String, &'static str),
    #[error("节点编号 {site}/{node} 已存在（{origin}），不能重复添加")]
    DuplicateNode {
        site: String,
        node: String,
        origin: &'static str,
    },
    #[error("机构 {0} 不存在，请先添加机构")]
    UnknownSite(String),
    #[error("节点 {0}/{1} 不存在")]
    UnknownNode(String, String),
    #[error("节点 {0}/{1} 已注销，不能再使用；请用新的节点编号重新登记")]
    Revoked(String, String),
    #[error("无法生成随机密码：{0}")]
    Random(#[from] crate::auth::credentials::NoRandomness),
    #[error("数据库错误：{0}")]
    Store(#[from] StoreError),
}

fn invalid(field: &str, message: impl Into<String>) -> RegError {
    RegError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

impl Location {
    /// Each field non-empty, at most [`MAX_FIELD_CHARS`] characters, no
    /// control characters; the first problem names its field.
    pub fn validate(&self) -> Result<(), RegError> {
        for (label, value) in [
            ("楼栋（building）", &self.building),
            ("楼层（floor）", &self.floor),
            ("房间（room）", &self.room),
            ("配电箱（panel）", &self.panel),
        ] {
            check_text(label, value)?;
        }
        Ok(())
    }
}

/// A text field an installer types: trimmed non-empty, bounded, printable.
fn check_text(label: &str, value: &str) -> Result<(), RegError> {
    if value.trim().is_empty() {
        return Err(invalid(label, "位置格式错误：不能为空"));
    }
    if value.trim() != value {
        return Err(invalid(label, "位置格式错误：首尾不能有空格"));
    }
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(invalid(
            label,
            format!("位置格式错误：不能超过 {MAX_FIELD_CHARS} 个字符"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(invalid(
            label,
            "位置格式错误：含有控制字符（换行、制表符等）",
        ));
    }
    Ok(())
}

/// Whether a quantity is measured through a current transformer.
pub fn needs_ct(q: Quantity) -> bool {
    matches!(q, Quantity::ResidualCurrent | Quantity::Current)
}

impl ChannelSpec {
    /// Parses the CLI form `ID:QUANTITY:ct=RATIO` (CT quantities) or
    /// `ID:QUANTITY:SENSOR` (others), e.g. `rc1:residual_current:ct=1000`,
    /// `t1:temperature:ntc`.
    pub fn parse(s: &str) -> Result<ChannelSpec, RegError> {
        let field = format!("通道 {s:?}");
        let mut parts = s.split(':');
        let (Some(id), Some(quantity), Some(third), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(
                &field,
                "格式应为 编号:测量量:ct=变比 或 编号:测量量:传感器类型，例如 rc1:residual_current:ct=1000、t1:temperature:ntc",
            ));
        };
        let (ct_ratio, sensor) = match third.strip_prefix("ct=") {
            Some(r) => match r.parse::<u32>() {
                Ok(r) => (Some(r), None),
                Err(_) => return Err(invalid(&field, format!("变比 {r:?} 不是正整数"))),
            },
            None => (None, Some(third.to_string())),
        };
        let spec = ChannelSpec {
            id: id.to_string(),
            quantity: quantity.to_string(),
            ct_ratio,
            sensor,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Id and quantity valid; a CT ratio (1–[`MAX_CT_RATIO`]) exactly for
    /// CT-measured quantities, a sensor type (`[a-z0-9_-]{1,16}`) for the others.
    pub fn validate(&self) -> Result<(), RegError> {
        let field = format!("通道 {}", self.id);
        if ChannelId::new(&self.id).is_err() {
            return Err(invalid(
                &format!("通道编号 {:?}", self.id),
                format!("须匹配 {}", ChannelId::PATTERN),
            ));
        }
        let Some(q) = Quantity::from_wire(&self.quantity) else {
            let known: Vec<&str> = Quantity::ALL.iter().map(|q| q.as_str()).collect();
            return Err(invalid(
                &field,
                format!(
                    "未知测量量 {:?}（可用：{}）",
                    self.quantity,
                    known.join("、")
                ),
            ));
        };
        match (needs_ct(q), self.ct_ratio, &self.sensor) {
            (true, Some(r), None) if (1..=MAX_CT_RATIO).contains(&r) => Ok(()),
            (true, Some(_), None) => Err(invalid(
                &field,
                format!("互感器变比须在 1–{MAX_CT_RATIO} 之间"),
            )),
            (true, _, _) => Err(invalid(
                &field,
                format!("{} 经互感器测量，须给出变比 ct=…", self.quantity),
            )),
            (false, None, Some(s))
                if !s.is_empty()
                    && s.len() <= 16
                    && s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    }) =>
            {
                Ok(())
            }
            (false, None, _) => Err(invalid(
                &field,
                "须给出传感器类型（小写字母、数字、_、-，最多 16 个字符），例如 ntc、pt100、4-20ma",
            )),
            (false, Some(_), _) => Err(invalid(
                &field,
                format!("{} 不经互感器测量，不能设置变比", self.quantity),
            )),
        }
    }
}

/// Checks a node's channel list: each valid, ids unique, at most [`MAX_CHANNELS`].
pub fn validate_channels(channels: &[ChannelSpec]) -> Result<(), RegError> {
    if channels.is_empty() {
        return Err(invalid("通道", "至少需要一个通道"));
    }
    if channels.len() > MAX_CHANNELS {
        return Err(invalid("通道", format!("最多 {MAX_CHANNELS} 个通道")));
    }
    let mut seen = std::collections::HashSet::new();
    for c in channels {
        c.validate()?;
        if !seen.insert(c.id.as_str()) {
            return Err(invalid(
                &format!("通道 {}", c.id),
                "通道编号重复".to_string(),
            ));
        }
    }
    Ok(())
}

/// A site id and name, checked.
pub fn validate_site(id: &str, name: &str) -> Result<(), RegError> {
    if SiteId::new(id).is_err() {
        return Err(invalid(
            &format!("机构编号 {id:?}"),
            format!("须匹配 {}（小写字母、数字、_、-）", SiteId::PATTERN),
        ));
    }
    check_text("机构名称", name).map_err(|e| match e {
        RegError::Invalid { field, message } => RegError::Invalid {
            field,
            message: message.replace("位置格式错误：", ""),
        },
        e => e,
    })
}

/// A node to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNode {
    pub site: String,
    pub id: String,
    pub location: Location,
    pub channels: Vec<ChannelSpec>,
}

impl NewNode {
    /// Id, location and channels, checked in that order.
    pub fn validate(&self) -> Result<(), RegError> {
        if NodeId::new(&self.id).is_err() {
            return Err(invalid(
                &format!("节点编号 {:?}", self.id),
                format!("须匹配 {}（小写字母、数字、_、-）", NodeId::PATTERN),
            ));
        }
        self.location.validate()?;
        validate_channels(&self.channels)
    }
}

pub use crate::store::registry::effective;

/// A password issued to a node: shown once, never stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Issued {
    /// MQTT username and client id: `{site}.{node}`.
    pub username: String,
    /// The password. Shown only in this answer; the gateway keeps only its hash.
    pub password: String,
}

fn issue(site: &str, node: &str) -> Result<(Issued, String), RegError> {
    let password = crate::auth::credentials::new_password()?;
    let hash = crate::auth::credentials::hash(&password)?;
    Ok((
        Issued {
            username: crate::domain::ids::node_username(site, node),
            password,
        },
        hash,
    ))
}

/// Keeps RabbitMQ's hash of a password just issued (`crate::ingest::rabbitmq`):
/// the only moment the gateway sees the password. A failure here leaves the
/// credential working everywhere but RabbitMQ, where `rabbitmq-sync` names
/// it for rotation; it does not undo the issue.
async fn keep_rabbit_hash(store: &Store, issued: &Issued, now: u64) -> Result<(), RegError> {
    let hash = crate::ingest::rabbitmq::password_hash(&issued.password)?;
    store.set_rabbit_hash(&issued.username, &hash, now).await?;
    Ok(())
}

/// Adds a site. Refused: a malformed id or name, an id already in the file
/// or registered.
pub async fn add_site(
    store: &Store,
    base: &Config,
    id: &str,
    name: &str,
    actor: Actor<'_>,
    now: u64,
) -> Result<RegisteredSite, RegError> {
    validate_site(id, name)?;
    if base.sites.iter().any(|s| s.id == id) {
        return Err(RegError::DuplicateSite(id.into(), "配置文件中已有"));
    }
    let site = RegisteredSite {
        id: id.into(),
        name: name.into(),
        created_by: actor.name.into(),
        created_at: now,
    };
    if !store.add_registered_site(&site, actor.role).await? {
        return Err(RegError::DuplicateSite(id.into(), "已登记"));
    }
    Ok(site)
}

/// Registers a node and issues its credentials. Refused: malformed input,
/// an unknown site, a node id already in the file or registered (revoked
/// ones included: an id is never reused).
pub async fn add_node(
    store: &Store,
    base: &Config,
    node: &NewNode,
    actor: Actor<'_>,
    now: u64,
) -> Result<(RegisteredNode, Issued), RegError> {
    node.validate()?;
    let reg = store.registry().await?;
    let in_file = base.sites.iter().find(|s| s.id == node.site);
    if in_file.is_none() && reg.sites.iter().all(|s| s.id != node.site) {
        return Err(RegError::UnknownSite(node.site.clone()));
    }
    if in_file.is_some_and(|s| s.nodes.iter().any(|n| n.id == node.id)) {
        return Err(RegError::DuplicateNode {
            site: node.site.clone(),
            node: node.id.clone(),
            origin: "配置文件中已有",
        });
    }
    let duplicate = || RegError::DuplicateNode {
        site: node.site.clone(),
        node: node.id.clone(),
        origin: "已登记",
    };
    if reg
        .nodes
        .iter()
        .any(|n| n.site == node.site && n.id == node.id)
    {
        return Err(duplicate());
    }
    let (issued, hash) = issue(&node.site, &node.id)?;
    let row = RegisteredNode {
        site: node.site.clone(),
        id: node.id.clone(),
        location: node.location.clone(),
        channels: node.channels.clone(),
        created_by: actor.name.into(),
        created_at: now,
        revoked_at: None,
    };
    if !store.add_registered_node(&row, &hash, actor.role).await? {
        return Err(duplicate());
    }
    keep_rabbit_hash(store, &issued, now).await?;
    Ok((row, issued))
}

/// Issues new credentials to a node (registered, or declared in the file):
/// the old password stops working at once and its live connection is
/// closed. A revoked registered node cannot be given new ones.
pub async fn rotate(
    store: &Store,
    base: &Config,
    site: &str,
    node: &str,
    actor: Actor<'_>,
    now: u64,
) -> Result<Issued, RegError> {
    let reg = store.registry().await?;
    let registered = reg.nodes.iter().find(|n| n.site == site && n.id == node);
    match registered {
        Some(n) if n.revoked_at.is_some() => {
            return Err(RegError::Revoked(site.into(), node.into()))
        }
        Some(_) => {}
        None if base.node(site, node).is_some() => {}
        None => return Err(RegError::UnknownNode(site.into(), node.into())),
    }
    let (issued, hash) = issue(site, node)?;
    store.set_credential(site, node, &hash, actor, now).await?;
    keep_rabbit_hash(store, &issued, now).await?;
    Ok(issued)
}

/// Revokes a node (注销): its credentials stop working and its live
/// connection is closed; a registered node also leaves the configuration
/// in force. A node of the file keeps its place there (edit the file to
/// remove it) but can no longer log in.
pub async fn revoke(
    store: &Store,
    base: &Config,
    site: &str,
    node: &str,
    actor: Actor<'_>,
    now: u64,
) -> Result<(), RegError> {
    let reg = store.registry().await?;
    let registered = reg.nodes.iter().find(|n| n.site == site && n.id == node);
    match registered {
        Some(n) if n.revoked_at.is_some() => Err(RegError::Revoked(site.into(), node.into())),
        None if base.node(site, node).is_none() => {
            Err(RegError::UnknownNode(site.into(), node.into()))
        }
        _ => {
            store.revoke_node(site, node, actor, now).await?;
            Ok(())
        }
    }
}

/// A node as `node list` and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NodeListing {
    pub site: String,
    pub id: String,
    /// 楼栋/楼层/房间/配电箱 as one line.
    pub location: String,
    /// `config` (declared in the file) or `registered`.
    pub origin: &'static str,
    /// `none` (no credentials: anonymous login, if allowed), `active` or `revoked`.
    pub credential: &'static str,
    /// Registered channels (empty for nodes of the file).
    pub channels: Vec<ChannelSpec>,
    pub revoked_at: Option<u64>,
}

/// Every node of the file and the registry (of one site, or all), with its
/// credential state.
pub fn listing(base: &Config, reg: &Registry, site: Option<&str>) -> Vec<NodeListing> {
    let cred = |s: &str, n: &str| match reg.credentials.iter().find(|c| c.site == s && c.node == n)
    {
        None => "none",
        Some(c) if c.revoked_at.is_some() => "revoked",
        Some(_) => "active",
    };
    let mut out = Vec::new();
    for s in base.sites.iter().filter(|s| site.is_none_or(|x| x == s.id)) {
        for n in &s.nodes {
            out.push(NodeListing {
                site: s.id.clone(),
                id: n.id.clone(),
                location: n.location.clone(),
                origin: "config",
                credential: cred(&s.id, &n.id),
                channels: Vec::new(),
                revoked_at: None,
            });
        }
    }
    for n in reg
        .nodes
        .iter()
        .filter(|n| site.is_none_or(|x| x == n.site))
    {
        out.push(NodeListing {
            site: n.site.clone(),
            id: n.id.clone(),
            location: n.location.display(),
            origin: "registered",
            credential: cred(&n.site, &n.id),
            channels: n.channels.clone(),
            revoked_at: n.revoked_at,
        });
    }
    out
}

/// [`listing`] from the store.
pub async fn list(
    store: &Store,
    base: &Config,
    site: Option<&str>,
) -> Result<Vec<NodeListing>, RegError> {
    let reg = store.registry().await?;
    Ok(listing(base, &reg, site))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc() -> Location {
        Location {
            building: "1号楼".into(),
            floor: "2层".into(),
            room: "201".into(),
            panel: "AL-2".into(),
        }
    }

    fn message(e: RegError) -> String {
        e.to_string()
    }

    #[test]
    fn malformed_locations_name_their_field() {
        assert!(loc().validate().is_ok());
        type Breaker = fn(&mut Location);
        let cases: [(Breaker, &str, &str); 6] = [
            (|l| l.building.clear(), "楼栋", "不能为空"),
            (|l| l.floor = "   ".into(), "楼层", "不能为空"),
            (|l| l.room = "2\n01".into(), "房间", "控制字符"),
            (|l| l.panel = "A".repeat(33), "配电箱", "32"),
            (|l| l.panel = " AL-2".into(), "配电箱", "空格"),
            (|l| l.floor = "2\u{7}层".into(), "楼层", "控制字符"),
        ];
        for (break_it, field, why) in cases {
            let mut l = loc();
            break_it(&mut l);
            let m = message(l.validate().unwrap_err());
            assert!(m.starts_with(field), "{m}");
            assert!(m.contains(why), "{m}");
        }
        // 32 Chinese characters are fine: characters, not bytes, are counted.
        let mut l = loc();
        l.room = "房".repeat(32);
        assert!(l.validate().is_ok());
        assert_eq!(loc().display(), "1号楼 2层 201 配电箱AL-2");
    }

    #[test]
    fn channel_syntax() {
        assert_eq!(
            ChannelSpec::parse("rc1:residual_current:ct=1000").unwrap(),
            ChannelSpec {
                id: "rc1".into(),
                quantity: "residual_current".into(),
                ct_ratio: Some(1000),
                sensor: None
            }
        );
        assert_eq!(
            ChannelSpec::parse("t1:temperature:ntc").unwrap().sensor,
            Some("ntc".into())
        );
        for (bad, why) in [
            ("rc1", "格式"),
            ("rc1:residual_current", "格式"),
            ("rc1:residual_current:ct=1000:x", "格式"),
            ("RC1:residual_current:ct=1000", "通道编号"),
            ("rc1:leakage:ct=1000", "未知测量量"),
            ("rc1:residual_current:ct=abc", "不是正整数"),
            ("rc1:residual_current:ct=0", "变比须在"),
            ("rc1:residual_current:ntc", "须给出变比"),
            ("t1:temperature:ct=100", "不能设置变比"),
            ("t1:temperature:", "传感器类型"),
            ("t1:temperature:NTC", "传感器类型"),
        ] {
            let m = message(ChannelSpec::parse(bad).unwrap_err());
            assert!(m.contains(why), "{bad}: {m}");
        }
        let two = [
            ChannelSpec::parse("t1:temperature:ntc").unwrap(),
            ChannelSpec::parse("t1:temperature:pt100").unwrap(),
        ];
        assert!(message(validate_channels(&two).unwrap_err()).contains("重复"));
        assert!(validate_channels(&[]).is_err());
    }

    #[test]
    fn sites_and_node_ids() {
        assert!(validate_site("home_c", "康宁养老院").is_ok());
        assert!(message(validate_site("Home C", "x").unwrap_err()).contains("机构编号"));
        assert!(message(validate_site("home_c", "").unwrap_err()).contains("机构名称"));
        let n = NewNode {
            site: "home_c".into(),
            id: "n.07".into(),
            location: loc(),
            channels: vec![ChannelSpec::parse("t1:temperature:ntc").unwrap()],
        };
        assert!(message(n.validate().unwrap_err()).contains("节点编号"));
    }

    #[test]
    fn effective_configuration_adds_registered_sites_and_live_nodes() {
        let base = Config::from_toml(
            "[[sites]]\nid = \"home_a\"\nname = \"甲\"\n[[sites.nodes]]\nid = \"n01\"\nlocation = \"file\"\n",
        )
        .unwrap();
        let node = |site: &str, id: &str, revoked_at| RegisteredNode {
            site: site.into(),
            id: id.into(),
            location: loc(),
            channels: vec![ChannelSpec::parse("rc1:residual_current:ct=1000").unwrap()],
            created_by: "cli".into(),
            created_at: 1,
            revoked_at,
        };
        let reg = Registry {
            version: 3,
            sites: vec![RegisteredSite {
                id: "home_c".into(),
                name: "丙".into(),
                created_by: "cli".into(),
                created_at: 1,
            }],
            nodes: vec![
                node("home_a", "n02", None),
                node("home_c", "n07", None),
                node("home_c", "n08", Some(5)),
                // Collides with the file: the file's entry wins.
                node("home_a", "n01", None),
            ],
            credentials: vec![],
            certificates: vec![],
        };
        let c = effective(&base, &reg);
        assert_eq!(c.node("home_a", "n01").unwrap().1.location, "file");
        assert_eq!(
            c.node("home_a", "n02").unwrap().1.location,
            "1号楼 2层 201 配电箱AL-2"
        );
        let (s, n) = c.node("home_c", "n07").unwrap();
        assert_eq!(s.name, "丙");
        assert_eq!(n.channels[0].quantity.as_deref(), Some("residual_current"));
        assert!(c.node("home_c", "n08").is_none(), "revoked nodes leave");
        assert_eq!(c.sites.iter().map(|s| s.nodes.len()).sum::<usize>(), 3);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }
}
