//! Wire contract v1 between sensor nodes and the gateway (节点 ⇄ 网关 通信协议).
//!
//! One definition of every topic and payload, used by both sides: the firmware
//! encodes with `serde-json-core` (no heap), the gateway decodes with
//! `serde_json` (feature `std`). The contract is fixed by `shared/DESIGN.md`:
//!
//! | topic                               | payload            |
//! |-------------------------------------|--------------------|
//! | `fire/v1/{site}/{node}/telemetry`   | [`Telemetry`]      |
//! | `fire/v1/{site}/{node}/status`      | [`Status`] (retained; Last Will `{"state":"offline"}`) |
//! | `fire/v1/{site}/{node}/event`       | [`Event`]          |
//! | `fire/v1/{site}/{node}/cmd`         | [`Cmd`] (`config` carries one channel's setpoints, applied in the node's RAM only) |
//! | `fire/v1/{site}/{node}/cmd/ack`     | [`CmdAck`]         |
//!
//! [`provision`] is the node's provisioning artefact (identity, broker,
//! credentials, channel map, setpoints as one framed blob the firmware reads
//! at boot) and the QR-code-friendly label form of a node's identity.
//!
//! Decoding treats every byte as hostile: anything that does not fit the
//! contract is a typed [`DecodeError`], never a panic.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

mod codec;
mod id;
mod payload;
pub mod provision;
mod topic;

#[cfg(feature = "std")]
pub use codec::{decode, encode_vec};
pub use codec::{decode_core, encode, DecodeError, EncodeError};
pub use id::{ChannelId, CmdId, IdError, NodeId, SiteId};
pub use payload::{
    ChannelStatus, Cmd, CmdAck, CmdOp, Event, EventLevel, NodeState, Quantity, Reading, Status,
    Telemetry,
};
pub use topic::{Topic, TopicError, TopicKind};

/// Largest payload either side accepts, in bytes (64 KiB).
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Most channels one telemetry message may carry.
pub const MAX_CHANNELS: usize = 32;

/// Topic prefix of contract v1.
pub const TOPIC_PREFIX: &str = "fire/v1";
