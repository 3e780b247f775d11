//! Topic names of contract v1: `fire/v1/{site}/{node}/{kind}`.

use crate::id::{IdError, NodeId, SiteId};
use crate::TOPIC_PREFIX;
use core::fmt;

/// The message kinds, by topic suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// `telemetry`, node → gateway.
    Telemetry,
    /// `status`, node → gateway, retained; also the Last Will.
    Status,
    /// `event`, node → gateway.
    Event,
    /// `cmd`, gateway → node.
    Cmd,
    /// `cmd/ack`, node → gateway.
    CmdAck,
}

impl TopicKind {
    /// The topic suffix after `{node}/`.
    pub const fn suffix(self) -> &'static str {
        match self {
            TopicKind::Telemetry => "telemetry",
            TopicKind::Status => "status",
            TopicKind::Event => "event",
            TopicKind::Cmd => "cmd",
            TopicKind::CmdAck => "cmd/ack",
        }
    }

    fn from_suffix(s: &str) -> Option<Self> {
        Some(match s {
            "telemetry" => TopicKind::Telemetry,
            "status" => TopicKind::Status,
            "event" => TopicKind::Event,
            "cmd" => TopicKind::Cmd,
            "cmd/ack" => TopicKind::CmdAck,
            _ => return None,
        })
    }
}

/// Why a topic is not a contract v1 topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicError {
    /// Does not start with `fire/v1/`.
    Prefix,
    /// Too few levels, or an unknown suffix.
    Shape,
    /// The site level does not match its pattern.
    Site(IdError),
    /// The node level does not match its pattern.
    Node(IdError),
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::Prefix => write!(f, "topic does not start with {TOPIC_PREFIX}/"),
            TopicError::Shape => f.write_str(
                "topic is not fire/v1/{site}/{node}/{telemetry|status|event|cmd|cmd/ack}",
            ),
            TopicError::Site(e) => write!(f, "site id: {e}"),
            TopicError::Node(e) => write!(f, "node id: {e}"),
        }
    }
}

/// A parsed topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Topic {
    /// The site level.
    pub site: SiteId,
    /// The node level.
    pub node: NodeId,
    /// The message kind.
    pub kind: TopicKind,
}

impl Topic {
    /// Builds a topic from its parts.
    pub fn new(site: SiteId, node: NodeId, kind: TopicKind) -> Self {
        Topic { site, node, kind }
    }

    /// Parses `fire/v1/{site}/{node}/{kind}`.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let rest = topic
            .strip_prefix(TOPIC_PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(TopicError::Prefix)?;
        let (site, rest) = rest.split_once('/').ok_or(TopicError::Shape)?;
        let (node, suffix) = rest.split_once('/').ok_or(TopicError::Shape)?;
        let kind = TopicKind::from_suffix(suffix).ok_or(TopicError::Shape)?;
        Ok(Topic {
            site: SiteId::new(site).map_err(TopicError::Site)?,
            node: NodeId::new(node).map_err(TopicError::Node)?,
            kind,
        })
    }

    /// The topic string, in a fixed-capacity buffer (the longest topic fits).
    pub fn to_heapless(&self) -> heapless::String<96> {
        let mut s = heapless::String::new();
        // 7 + 1 + 32 + 1 + 32 + 1 + 9 = 83 bytes at most: always fits.
        let _ = fmt::Write::write_fmt(&mut s, format_args!("{self}"));
        s
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOPIC_PREFIX}/{}/{}/{}",
            self.site,
            self.node,
            self.kind.suffix()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_every_kind() {
        for kind in [
            TopicKind::Telemetry,
            TopicKind::Status,
            TopicKind::Event,
            TopicKind::Cmd,
            TopicKind::CmdAck,
        ] {
            let t = Topic::new(
                SiteId::new("home_a").unwrap(),
                NodeId::new("n01").unwrap(),
                kind,
            );
            let s = t.to_heapless();
            assert_eq!(s.as_str(), ["fire/v1/home_a/n01/", kind.suffix()].concat());
            assert_eq!(Topic::parse(&s), Ok(t));
        }
    }

    #[test]
    fn rejects_foreign_topics() {
        assert_eq!(
            Topic::parse("fire/v2/a/b/telemetry"),
            Err(TopicError::Prefix)
        );
        assert_eq!(Topic::parse("fire/v1"), Err(TopicError::Prefix));
        assert_eq!(Topic::parse("fire/v1/a/b"), Err(TopicError::Shape));
        assert_eq!(
            Topic::parse("fire/v1/a/b/telemetry/x"),
            Err(TopicError::Shape)
        );
        assert_eq!(Topic::parse("fire/v1/a/b/cmd/nack"), Err(TopicError::Shape));
        assert_eq!(
            Topic::parse("fire/v1/A/b/status"),
            Err(TopicError::Site(IdError::Character))
        );
        assert_eq!(
            Topic::parse("fire/v1/a//status"),
            Err(TopicError::Node(IdError::Length { max: 32 }))
        );
        let long = ["fire/v1/a/", &"n".repeat(33), "/event"].concat();
        assert_eq!(
            Topic::parse(&long),
            Err(TopicError::Node(IdError::Length { max: 32 }))
        );
    }
}
