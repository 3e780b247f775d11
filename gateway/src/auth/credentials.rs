//! MQTT credentials of a node (节点接入凭据): a random password, shown once,
//! stored only as a hash in Mosquitto's own `$7$` format, so the gateway can
//! both check a node's CONNECT in its own broker and write a password file
//! that an external Mosquitto reads as it is.
//!
//! `$7$` is what `mosquitto_passwd` writes since Mosquitto 2.0:
//! `$7${iterations}${salt, base64}${PBKDF2-HMAC-SHA512(password, salt), base64}`,
//! standard base64 with padding, a 12-byte salt, a 64-byte hash and 101
//! iterations by default. Pure functions; the randomness comes from the OS.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

/// `mosquitto_passwd`'s default iteration count.
pub const ITERATIONS: u32 = 101;
/// Salt length `mosquitto_passwd` uses.
pub const SALT_BYTES: usize = 12;
/// Random bytes in a generated password: 192 bits.
pub const PASSWORD_BYTES: usize = 24;
/// The most iterations a stored hash may ask for when verifying: bounds the
/// work one CONNECT can cause.
const MAX_ITERATIONS: u32 = 1_000_000;
const HASH_BYTES: usize = 64;

/// Why no password could be made.
#[derive(Debug, thiserror::Error)]
#[error("no randomness from the operating system: {0}")]
pub struct NoRandomness(pub(crate) String);

/// A new random password: 192 bits, URL-safe base64 without padding (32
/// characters from `A–Z a–z 0–9 - _`), so it survives a shell, a URL and a
/// TOML or JSON file unquoted.
pub fn new_password() -> Result<String, NoRandomness> {
    let mut bytes = [0u8; PASSWORD_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| NoRandomness(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The `$7$` hash of `password` with a new random salt.
pub fn hash(password: &str) -> Result<String, NoRandomness> {
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(|e| NoRandomness(e.to_string()))?;
    Ok(hash_with(password, &salt, ITERATIONS))
}

/// The `$7$` hash of `password` with the given salt and iterations.
pub fn hash_with(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut out = [0u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), salt, iterations, &mut out);
    format!(
        "$7${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(out)
    )
}

/// Whether `password` matches a stored `$7$` hash. Anything that is not a
/// well-formed `$7$` hash matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    let Some(rest) = stored.strip_prefix("$7$") else {
        return false;
    };
    let mut parts = rest.split('$');
    let (Some(iter), Some(salt), Some(expected), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(iterations) = iter.parse::<u32>() else {
        return false;
    };
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return false;
    }
    let (Ok(salt), Ok(expected)) = (STANDARD.decode(salt), STANDARD.decode(expected)) else {
        return false;
    };
    if expected.len() != HASH_BYTES || salt.is_empty() {
        return false;
    }
    let mut actual = [0u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), &salt, iterations, &mut actual);
    constant_time_eq(&actual, &expected)
}

/// Does the work of [`verify`] against a stored hash of the usual
/// strength and throws the answer away: the refusal of an unknown username
/// then takes as long as that of a wrong password.
pub fn spend_verify(password: &str) {
    const SALT: [u8; SALT_BYTES] = [0x5a; SALT_BYTES];
    let mut actual = [0u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), &SALT, ITERATIONS, &mut actual);
    let _ = std::hint::black_box(constant_time_eq(&actual, &[0u8; HASH_BYTES]));
}

/// Compares without an early exit, so timing does not tell how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_a_hash_made_by_mosquitto_passwd() {
        // `mosquitto_passwd -c -b FILE u secret` (Mosquitto 2.0.11).
        let made_by_mosquitto = "$7$101$1LzMgc+A8+Cmcg1S$YWYgSPvvuY6IJ8TKL/Q/bxE9uGkv28d92g8ME1lYuK3q1cHv3TW18M7dAMeVSZr5dlItXbAskk3xIGnabib90Q==";
        assert!(verify("secret", made_by_mosquitto));
        assert!(!verify("Secret", made_by_mosquitto));
        assert!(!verify("secret ", made_by_mosquitto));
    }

    #[test]
    fn same_salt_same_hash_as_mosquitto() {
        let salt = STANDARD.decode("1LzMgc+A8+Cmcg1S").unwrap();
        assert_eq!(
            hash_with("secret", &salt, 101),
            "$7$101$1LzMgc+A8+Cmcg1S$YWYgSPvvuY6IJ8TKL/Q/bxE9uGkv28d92g8ME1lYuK3q1cHv3TW18M7dAMeVSZr5dlItXbAskk3xIGnabib90Q=="
        );
    }

    #[test]
    fn new_passwords_are_long_random_and_url_safe() {
        let (a, b) = (new_password().unwrap(), new_password().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32, "192 bits in 32 base64 characters");
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let h = hash(&a).unwrap();
        assert!(h.starts_with("$7$101$"), "{h}");
        assert!(verify(&a, &h));
        assert!(!verify(&b, &h));
        assert_ne!(hash(&a).unwrap(), h, "a new salt every time");
    }

    #[test]
    fn malformed_hashes_match_nothing() {
        let good = hash_with("pw", b"0123456789ab", 101);
        for bad in [
            "",
            "pw",
            "$6$abc$def",
            "$7$",
            "$7$101$",
            "$7$101$MDEyMzQ1Njc4OWFi",
            "$7$0$MDEyMzQ1Njc4OWFi$AAAA",
            "$7$99999999999$MDEyMzQ1Njc4OWFi$AAAA",
            "$7$101$!!!$AAAA",
            "$7$101$MDEyMzQ1Njc4OWFi$AAAA",
            "$7$101$$AAAA",
            &format!("{good}$extra"),
            &good.replace("$7$101$", "$7$102$"),
        ] {
            assert!(!verify("pw", bad), "{bad:?}");
        }
        assert!(verify("pw", &good));
    }
}
