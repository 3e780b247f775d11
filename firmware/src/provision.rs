//! From the provisioning artefact ([`wire::provision`]) to a running node:
//! [`load`] decodes the blob and [`NodeSetup::new`] turns the decoded
//! [`Provision`] into the node's identity, its MQTT strings (client id,
//! user, password, topics), the front end's configuration and one rule per
//! channel — the artefact's setpoints over the `rules` defaults, validated
//! for the quantity ([`rules::defaults::provisioned`]).
//!
//! The channels of the artefact are the board's inputs in order
//! ([`crate::board::INPUTS`]): channel *i* must name the sensor kind that is
//! wired to input *i* (a CT on the CT input, …); fewer channels than inputs
//! leave the last inputs unused. Anything that does not fit is a typed
//! [`SetupError`]: the node logs it and stops rather than run on defaults.

use crate::app::NodeStrings;
use crate::board::{BoardConfig, InputKind, INPUTS};
use crate::buffer::MAX_NODE_CHANNELS;
use crate::node::NodeIdentity;
use core::fmt;
use rules::{ChannelRule, RuleError};
use wire::provision::{Broker, Provision, ProvisionError, Sensor};
use wire::{ChannelId, Quantity};

/// Why a node cannot start from an artefact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The blob is not a valid artefact.
    Artefact(ProvisionError),
    /// More channels than the board has inputs.
    TooManyChannels {
        /// Channels in the artefact.
        channels: usize,
        /// Inputs of the board.
        inputs: usize,
    },
    /// Channel `channel`'s sensor is not what the board has on that input.
    Input {
        /// Index in the artefact's `ch`.
        channel: u8,
        /// What the board has there.
        wired: InputKind,
    },
    /// Channel `channel`'s setpoints are refused by the rules.
    Rule {
        /// Index in the artefact's `ch`.
        channel: u8,
        /// Why.
        error: RuleError,
    },
    /// Client id, user name or password too long for the session.
    Credentials,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Artefact(e) => write!(f, "bad artefact: {e}"),
            SetupError::TooManyChannels { channels, inputs } => {
                write!(f, "{channels} channels, the board has {inputs} inputs")
            }
            SetupError::Input { channel, wired } => {
                write!(f, "ch[{channel}]: the board has a {wired:?} input there")
            }
            SetupError::Rule { channel, error } => write!(f, "ch[{channel}]: {error}"),
            SetupError::Credentials => f.write_str("credentials too long"),
        }
    }
}

impl core::error::Error for SetupError {}

impl From<ProvisionError> for SetupError {
    fn from(e: ProvisionError) -> Self {
        SetupError::Artefact(e)
    }
}

/// One channel ready for [`crate::app::NodeApp::add_channel_rule`].
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelSetup {
    /// Channel id.
    pub id: ChannelId,
    /// What it measures.
    pub q: Quantity,
    /// Its local rule.
    pub rule: ChannelRule,
}

/// Everything the node starts with, from its artefact.
#[derive(Clone, Debug)]
pub struct NodeSetup {
    /// Site, node and this boot's number.
    pub identity: NodeIdentity,
    /// What the MQTT session borrows.
    pub strings: NodeStrings,
    /// Where the broker is (informative where the link is fixed, as on QEMU).
    pub broker: Broker,
    /// The front end's configuration.
    pub board: BoardConfig,
    /// The channels, in input order.
    pub channels: heapless::Vec<ChannelSetup, MAX_NODE_CHANNELS>,
}

impl NodeSetup {
    /// The node described by `p`, in its boot number `boot`.
    pub fn new(p: &Provision, boot: u32) -> Result<Self, SetupError> {
        if p.channels.len() > INPUTS.len() {
            return Err(SetupError::TooManyChannels {
                channels: p.channels.len(),
                inputs: INPUTS.len(),
            });
        }
        let mut board = BoardConfig::DEFAULT;
        let mut channels = heapless::Vec::new();
        let mut loops = 0;
        for (i, (c, wired)) in p.channels.iter().zip(INPUTS).enumerate() {
            let channel = i as u8;
            match (c.sensor, wired) {
                (Sensor::Ct { ratio }, InputKind::Ct) => board.ct.ratio = u32::from(ratio),
                (Sensor::NtcB3950, InputKind::Ntc) => {}
                (Sensor::Loop { lo, hi }, InputKind::Loop) => {
                    let l = if loops == 0 {
                        &mut board.loop1
                    } else {
                        &mut board.loop2
                    };
                    l.lo = lo;
                    l.hi = hi;
                    loops += 1;
                }
                _ => return Err(SetupError::Input { channel, wired }),
            }
            let rule = rules::defaults::provisioned(c.q, &c.set)
                .map_err(|error| SetupError::Rule { channel, error })?;
            channels
                .push(ChannelSetup {
                    id: c.id.clone(),
                    q: c.q,
                    rule,
                })
                .map_err(|_| SetupError::TooManyChannels {
                    channels: p.channels.len(),
                    inputs: MAX_NODE_CHANNELS,
                })?;
        }
        let identity = NodeIdentity {
            site: p.site.clone(),
            node: p.node.clone(),
            boot,
        };
        let strings = NodeStrings::new(&identity, &p.client_id, &p.username, &p.password)
            .ok_or(SetupError::Credentials)?;
        Ok(NodeSetup {
            identity,
            strings,
            broker: p.broker.clone(),
            board,
            channels,
        })
    }
}

/// Decodes the artefact `blob` and sets the node up from it in boot `boot`.
pub fn load(blob: &[u8], boot: u32) -> Result<NodeSetup, SetupError> {
    let p = wire::provision::decode(blob)?;
    NodeSetup::new(&p, boot)
}
