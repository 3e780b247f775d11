//! Identifiers: sites, nodes, channels and command ids, validated on construction
//! and on decoding, so a value of these types always matches its pattern.

use core::fmt;
use core::ops::Deref;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdError {
    /// Empty, or longer than the pattern allows.
    Length { max: usize },
    /// A character outside the allowed set.
    Character,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Length { max } => write!(f, "length must be 1..={max}"),
            IdError::Character => f.write_str("character outside the allowed set"),
        }
    }
}

fn check(s: &str, max: usize, allowed: fn(u8) -> bool) -> Result<(), IdError> {
    if s.is_empty() || s.len() > max {
        return Err(IdError::Length { max });
    }
    if !s.bytes().all(allowed) {
        return Err(IdError::Character);
    }
    Ok(())
}

fn lower_digit_underscore(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

fn lower_digit_underscore_dash(b: u8) -> bool {
    lower_digit_underscore(b) || b == b'-'
}

fn alnum_underscore_dash(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Marker put in deserialisation errors for invalid identifiers; see `codec`.
pub(crate) const ID_MARKER: &str = "wire:id";

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $max:expr, $allowed:expr, $pattern:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(heapless::String<$max>);

        impl $name {
            /// The pattern every value matches, as documented in the contract.
            pub const PATTERN: &'static str = $pattern;
            /// Longest value in bytes.
            pub const MAX_LEN: usize = $max;

            /// Validates `s` against [`Self::PATTERN`].
            pub fn new(s: &str) -> Result<Self, IdError> {
                check(s, $max, $allowed)?;
                let mut out = heapless::String::new();
                // Length was checked above, so this cannot fail.
                out.push_str(s).map_err(|_| IdError::Length { max: $max })?;
                Ok(Self(out))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl core::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "an identifier matching {}", $pattern)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::new(v).map_err(|e| {
                            E::custom(format_args!("{}: {} must match {}: {}", ID_MARKER, stringify!($name), $pattern, e))
                        })
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

identifier!(
    /// A site (an institution such as a care home): `[a-z0-9_-]{1,32}`.
    SiteId, 32, lower_digit_underscore_dash, "[a-z0-9_-]{1,32}"
);
identifier!(
    /// A sensor node within a site: `[a-z0-9_-]{1,32}`.
    NodeId, 32, lower_digit_underscore_dash, "[a-z0-9_-]{1,32}"
);
identifier!(
    /// A channel (one sensor input) within a node: `[a-z0-9_]{1,16}`.
    ChannelId, 16, lower_digit_underscore, "[a-z0-9_]{1,16}"
);
identifier!(
    /// A command id chosen by the gateway and echoed in the ack: `[A-Za-z0-9_-]{1,32}`.
    CmdId, 32, alnum_underscore_dash, "[A-Za-z0-9_-]{1,32}"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_enforced() {
        assert!(SiteId::new("home_a").is_ok());
        assert!(SiteId::new("home-a-01").is_ok());
        assert_eq!(SiteId::new(""), Err(IdError::Length { max: 32 }));
        assert_eq!(
            SiteId::new(&"a".repeat(33)),
            Err(IdError::Length { max: 32 })
        );
        assert!(SiteId::new(&"a".repeat(32)).is_ok());
        assert_eq!(SiteId::new("Home"), Err(IdError::Character));
        assert_eq!(SiteId::new("a/b"), Err(IdError::Character));
        assert_eq!(SiteId::new("a+"), Err(IdError::Character));
        assert_eq!(ChannelId::new("rc-1"), Err(IdError::Character));
        assert_eq!(
            ChannelId::new(&"a".repeat(17)),
            Err(IdError::Length { max: 16 })
        );
        assert!(ChannelId::new("t_1").is_ok());
        assert!(CmdId::new("c-42").is_ok());
        assert_eq!(CmdId::new("c 42"), Err(IdError::Character));
        assert_eq!(NodeId::new("节点"), Err(IdError::Character));
    }
}
