//! The node's identity and its [`Publisher`]: everything the node sends or
//! receives over MQTT, as contract v1 topics and payloads.
//!
//! The publisher owns the message counter `seq` of the current boot. By the
//! wire contract `(site, node, boot, seq)` identifies a message: `seq` counts
//! the node's `telemetry` and `event` messages together, starts at 0 on every
//! boot and wraps at `u32::MAX`. A number is consumed only when a message was
//! actually encoded, so a failed encode never leaves a gap.
//!
//! Every method is allocation-free: the payload is written into a buffer the
//! caller owns and returned as an [`Outgoing`] that borrows it, together with
//! the topic, QoS and retain flag the MQTT client must use. Incoming commands
//! go through [`Publisher::parse_cmd`], which treats topic and payload as
//! hostile and answers with a typed [`CmdError`], never a panic.

use core::fmt;
use wire::{
    ChannelId, Cmd, CmdAck, DecodeError, Event, EventLevel, NodeId, NodeState, Reading, SiteId,
    Status, Telemetry, Topic, TopicKind,
};

/// QoS of every message the node publishes (at least once).
pub const QOS: u8 = 1;

/// Largest `cmd` payload the node accepts, in bytes. A contract v1 command
/// (`{"id":…,"op":…}`, id at most 32 bytes) is under 64 bytes; anything much
/// larger is refused before it reaches the JSON parser.
pub const MAX_CMD_PAYLOAD: usize = 256;

/// Who the node is: its site, its node id and its boot counter (incremented
/// and persisted by the node on every restart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The site (institution) the node belongs to.
    pub site: SiteId,
    /// The node within the site.
    pub node: NodeId,
    /// Restart counter of the node.
    pub boot: u32,
}

impl NodeIdentity {
    /// The topic of `kind` for this node: `fire/v1/{site}/{node}/{kind}`.
    pub fn topic(&self, kind: TopicKind) -> heapless::String<96> {
        Topic::new(self.site.clone(), self.node.clone(), kind).to_heapless()
    }
}

/// A message ready to be handed to the MQTT client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The full topic.
    pub topic: heapless::String<96>,
    /// The JSON payload, borrowed from the caller's buffer.
    pub payload: &'a [u8],
    /// MQTT QoS (always [`QOS`], 1).
    pub qos: u8,
    /// Whether the broker keeps the message as the topic's retained message.
    pub retain: bool,
}

/// Why a message could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The caller's buffer is too small for the payload.
    BufferFull,
    /// More readings than one telemetry message may carry ([`wire::MAX_CHANNELS`]).
    TooManyChannels,
    /// The firmware version string is longer than the contract's 24 bytes.
    FwVersionTooLong,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishError::BufferFull => "payload buffer too small",
            PublishError::TooManyChannels => "more readings than one telemetry message carries",
            PublishError::FwVersionTooLong => "firmware version longer than 24 bytes",
        })
    }
}

impl core::error::Error for PublishError {}

impl From<wire::EncodeError> for PublishError {
    fn from(_: wire::EncodeError) -> Self {
        PublishError::BufferFull
    }
}

/// Why an incoming command was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdError {
    /// The topic is not this node's `fire/v1/{site}/{node}/cmd`.
    WrongTopic,
    /// The payload is not a contract v1 command. Larger than
    /// [`MAX_CMD_PAYLOAD`] is [`DecodeError::TooLarge`].
    Payload(DecodeError),
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::WrongTopic => f.write_str("not this node's cmd topic"),
            CmdError::Payload(e) => write!(f, "bad cmd payload: {e}"),
        }
    }
}

impl core::error::Error for CmdError {}

/// Builds every message of one node for the current boot, and numbers them.
#[derive(Clone, Debug)]
pub struct Publisher {
    identity: NodeIdentity,
    seq: u32,
}

impl Publisher {
    /// A publisher for a fresh boot: the first `telemetry` or `event` gets `seq` 0.
    pub fn new(identity: NodeIdentity) -> Self {
        Publisher { identity, seq: 0 }
    }

    /// The node's identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The `seq` the next `telemetry` or `event` will carry.
    pub fn next_seq(&self) -> u32 {
        self.seq
    }

    /// `fire/v1/{site}/{node}/telemetry`, QoS 1, not retained: `readings`
    /// sampled at `ts_ms` (ms since the Unix epoch, or 0 without a wall clock).
    /// Consumes a `seq` number only on success.
    pub fn telemetry<'a>(
        &mut self,
        ts_ms: u64,
        readings: &[Reading],
        buf: &'a mut [u8],
    ) -> Result<Outgoing<'a>, PublishError> {
        let mut ch = heapless::Vec::new();
        for r in readings {
            ch.push(r.clone())
                .map_err(|_| PublishError::TooManyChannels)?;
        }
        let msg = Telemetry {
            boot: self.identity.boot,
            seq: self.seq,
            ts: ts_ms,
            ch,
        };
        let n = wire::encode(&msg, buf)?;
        self.seq = self.seq.wrapping_add(1);
        Ok(self.outgoing(TopicKind::Telemetry, &buf[..n], false))
    }

    /// `fire/v1/{site}/{node}/event`, QoS 1, not retained: channel `ch`
    /// entered `level` because of value `v`. Consumes a `seq` number only on
    /// success.
    pub fn event<'a>(
        &mut self,
        ts_ms: u64,
        ch: &ChannelId,
        level: EventLevel,
        v: i32,
        buf: &'a mut [u8],
    ) -> Result<Outgoing<'a>, PublishError> {
        let msg = Event {
            boot: self.identity.boot,
            seq: self.seq,
            ts: ts_ms,
            ch: ch.clone(),
            level,
            v,
        };
        let n = wire::encode(&msg, buf)?;
        self.seq = self.seq.wrapping_add(1);
        Ok(self.outgoing(TopicKind::Event, &buf[..n], false))
    }

    /// `fire/v1/{site}/{node}/status`, QoS 1, retained: the birth message
    /// `{"state":"online","fw":…,"boot":…}`, with `"dropped":N` when given
    /// (readings lost from the offline buffer). Does not consume a `seq`.
    pub fn birth<'a>(
        &self,
        fw_version: &str,
        dropped: Option<u32>,
        buf: &'a mut [u8],
    ) -> Result<Outgoing<'a>, PublishError> {
        let fw =
            heapless::String::try_from(fw_version).map_err(|_| PublishError::FwVersionTooLong)?;
        let msg = Status {
            state: NodeState::Online,
            fw: Some(fw),
            boot: Some(self.identity.boot),
            dropped,
        };
        let n = wire::encode(&msg, buf)?;
        Ok(self.outgoing(TopicKind::Status, &buf[..n], true))
    }

    /// `fire/v1/{site}/{node}/status`, QoS 1, retained: the Last Will
    /// `{"state":"offline"}` to register when connecting.
    pub fn last_will<'a>(&self, buf: &'a mut [u8]) -> Result<Outgoing<'a>, PublishError> {
        let n = wire::encode(&Status::offline(), buf)?;
        Ok(self.outgoing(TopicKind::Status, &buf[..n], true))
    }

    /// `fire/v1/{site}/{node}/cmd/ack`, QoS 1, not retained: the answer to
    /// `cmd`, `ok` if it was carried out. Does not consume a `seq`.
    pub fn ack<'a>(
        &self,
        cmd: &Cmd,
        ok: bool,
        buf: &'a mut [u8],
    ) -> Result<Outgoing<'a>, PublishError> {
        let msg = CmdAck {
            id: cmd.id.clone(),
            ok,
        };
        let n = wire::encode(&msg, buf)?;
        Ok(self.outgoing(TopicKind::CmdAck, &buf[..n], false))
    }

    /// Parses a message received on `topic`: only this node's
    /// `fire/v1/{site}/{node}/cmd` is accepted, and the payload must be a
    /// contract v1 [`Cmd`] of at most [`MAX_CMD_PAYLOAD`] bytes. Any input
    /// gives a typed error, never a panic.
    pub fn parse_cmd(&self, topic: &str, payload: &[u8]) -> Result<Cmd, CmdError> {
        if topic != self.identity.topic(TopicKind::Cmd).as_str() {
            return Err(CmdError::WrongTopic);
        }
        if payload.len() > MAX_CMD_PAYLOAD {
            return Err(CmdError::Payload(DecodeError::TooLarge));
        }
        wire::decode_core::<Cmd>(payload).map_err(CmdError::Payload)
    }

    fn outgoing<'a>(&self, kind: TopicKind, payload: &'a [u8], retain: bool) -> Outgoing<'a> {
        Outgoing {
            topic: self.identity.topic(kind),
            payload,
            qos: QOS,
            retain,
        }
    }
}
