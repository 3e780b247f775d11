//! `[[sites]]`: sites (机构), their nodes and channels.

use super::RuleOverride;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct SiteConfig {
    pub id: String,
    /// Display name, e.g. 阳光养老院.
    pub name: String,
    /// Rule overrides for every node of this site, per quantity.
    pub rules: BTreeMap<String, RuleOverride>,
    pub nodes: Vec<NodeConfig>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct NodeConfig {
    pub id: String,
    /// 楼栋/楼层/房间/配电箱.
    pub location: String,
    /// This node's dead-man time, over the global `offline_after_secs`.
    pub offline_after_secs: Option<u32>,
    /// Rule overrides for this node's channels, per quantity.
    pub rules: BTreeMap<String, RuleOverride>,
    pub channels: Vec<ChannelConfig>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ChannelConfig {
    pub id: String,
    /// e.g. 2层东侧照明回路.
    pub location: String,
    /// What the channel measures (wire name); required with a rule override.
    pub quantity: Option<String>,
    /// This loop's own rule override, e.g. `rule = { alarm = 400 }`.
    pub rule: RuleOverride,
    /// The grade of hazards found on this loop: `general` (一般, default) or
    /// `major` (重大, e.g. a bedroom circuit in a care home).
    pub grade: Option<String>,
}
