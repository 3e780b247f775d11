//! Encoding and decoding of payloads, with typed errors.
//!
//! Encoding always goes through `serde-json-core` into a caller's buffer, so
//! the node and the gateway produce byte-identical JSON. Decoding has two
//! front ends over the same serde types: [`decode_core`] (no heap, for the
//! node) and [`decode`] (`serde_json`, for the gateway, feature `std`).
//!
//! Design: serde errors are strings, so the contract's own checks put a stable
//! marker at the front of their message (`wire:id`, `wire:range`, …) and
//! [`DecodeError`] is recovered from it. Markers are private to this crate.

#[cfg(feature = "std")]
use crate::id::ID_MARKER;
#[cfg(feature = "std")]
use crate::payload::{CHANNELS_MARKER, QUANTITY_MARKER, RANGE_MARKER, STATUS_MARKER};
use crate::MAX_PAYLOAD;
use core::fmt;
use serde::{de::DeserializeOwned, Serialize};

/// Why a payload was refused. Each kind is a separate drop reason in the
/// gateway's metrics (see [`DecodeError::reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// Larger than [`MAX_PAYLOAD`].
    TooLarge,
    /// Not UTF-8, or not JSON.
    Syntax,
    /// JSON, but not the payload's shape (missing, unknown or mistyped fields).
    Schema,
    /// An identifier does not match its pattern.
    InvalidId,
    /// A quantity name not in the contract.
    UnknownQuantity,
    /// A status, level, state or op name not in the contract.
    UnknownName,
    /// A value outside `i32`, or not an integer.
    OutOfRange,
    /// More than [`crate::MAX_CHANNELS`] channels.
    TooManyChannels,
}

impl DecodeError {
    /// A short, stable label for metrics and logs.
    pub const fn reason(self) -> &'static str {
        match self {
            DecodeError::TooLarge => "too_large",
            DecodeError::Syntax => "bad_json",
            DecodeError::Schema => "bad_schema",
            DecodeError::InvalidId => "bad_id",
            DecodeError::UnknownQuantity => "unknown_quantity",
            DecodeError::UnknownName => "unknown_name",
            DecodeError::OutOfRange => "out_of_range",
            DecodeError::TooManyChannels => "too_many_channels",
        }
    }

    /// Every kind, for pre-registering metrics.
    pub const ALL: [DecodeError; 8] = [
        DecodeError::TooLarge,
        DecodeError::Syntax,
        DecodeError::Schema,
        DecodeError::InvalidId,
        DecodeError::UnknownQuantity,
        DecodeError::UnknownName,
        DecodeError::OutOfRange,
        DecodeError::TooManyChannels,
    ];

    /// Recovers the kind from a serde error message carrying one of our markers.
    #[cfg(feature = "std")]
    fn from_message(msg: &str) -> Option<Self> {
        [
            (ID_MARKER, DecodeError::InvalidId),
            (QUANTITY_MARKER, DecodeError::UnknownQuantity),
            (STATUS_MARKER, DecodeError::UnknownName),
            (RANGE_MARKER, DecodeError::OutOfRange),
            (CHANNELS_MARKER, DecodeError::TooManyChannels),
        ]
        .into_iter()
        .find(|(marker, _)| msg.contains(marker))
        .map(|(_, kind)| kind)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::TooLarge => "payload larger than 64 KiB",
            DecodeError::Syntax => "payload is not valid UTF-8 JSON",
            DecodeError::Schema => "payload does not have the contract's fields",
            DecodeError::InvalidId => "identifier does not match its pattern",
            DecodeError::UnknownQuantity => "unknown quantity",
            DecodeError::UnknownName => "unknown status, level, state or op",
            DecodeError::OutOfRange => "value outside i32 or not an integer",
            DecodeError::TooManyChannels => "more channels than the contract allows",
        })
    }
}

/// Why a payload could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The buffer is too small for the payload.
    BufferFull,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("encode buffer too small")
    }
}

/// Encodes `value` as JSON into `buf`, returning the number of bytes written.
pub fn encode<T: Serialize>(value: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    serde_json_core::to_slice(value, buf).map_err(|_| EncodeError::BufferFull)
}

/// Encodes `value` as JSON into a new vector (gateway side), through the same
/// encoder as [`encode`] so both sides produce identical bytes.
#[cfg(feature = "std")]
pub fn encode_vec<T: Serialize>(value: &T) -> Result<std::vec::Vec<u8>, EncodeError> {
    // Most payloads are a few hundred bytes: start small and double, so a
    // message does not zero a whole `MAX_PAYLOAD` buffer (that memset was
    // the load tool's largest single cost at 50,000 messages a second).
    let mut len = 256.min(MAX_PAYLOAD);
    loop {
        let mut buf = std::vec![0u8; len];
        match encode(value, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(EncodeError::BufferFull) if len < MAX_PAYLOAD => len = (len * 2).min(MAX_PAYLOAD),
            Err(e) => return Err(e),
        }
    }
}

fn check_size(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.len() > MAX_PAYLOAD {
        Err(DecodeError::TooLarge)
    } else {
        Ok(())
    }
}

/// Decodes a payload without a heap (`serde-json-core`). Strings must not use
/// JSON escapes (no identifier or name in the contract needs one).
///
/// Design: the contract's own checks come back as [`DecodeError::Schema`]
/// here. serde-json-core can keep an error message only with its
/// `custom-error-messages` feature, which panics on messages longer than 64
/// bytes (serde's "unknown field" messages quote the input), so it stays off.
pub fn decode_core<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    use serde_json_core::de::Error as E;
    check_size(bytes)?;
    match serde_json_core::from_slice::<T>(bytes) {
        Ok((value, _)) => Ok(value),
        Err(E::CustomError | E::InvalidType) => Err(DecodeError::Schema),
        Err(_) => Err(DecodeError::Syntax),
    }
}

/// Decodes a payload with `serde_json` (gateway side).
#[cfg(feature = "std")]
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    use serde_json::error::Category;
    check_size(bytes)?;
    serde_json::from_slice::<T>(bytes).map_err(|e| match e.classify() {
        Category::Data => DecodeError::from_message(&std::string::ToString::to_string(&e))
            .unwrap_or(DecodeError::Schema),
        Category::Syntax | Category::Eof | Category::Io => DecodeError::Syntax,
    })
}
