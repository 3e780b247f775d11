//! The hash-chained audit trail (留痕): every operator action and ticket
//! step, each record's hash covering its fields and its predecessor's hash.
//! Pure: hashing and verification of records; the store appends them.

use sha2::{Digest, Sha256};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub subject: String,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash of a record's content after `prev_hash`. Fields are
/// length-prefixed, so no two different records hash the same input.
#[allow(clippy::too_many_arguments)]
pub fn hash(
    prev_hash: &str,
    id: i64,
    at: i64,
    actor: &str,
    role: &str,
    action: &str,
    subject: &str,
    details: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        prev_hash,
        &id.to_string(),
        &at.to_string(),
        actor,
        role,
        action,
        subject,
        details,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("record {id}: expected record {expected} (a record was deleted or inserted)")]
    Gap { id: i64, expected: i64 },
    #[error("record {id}: its link to the previous record does not match (the previous record was changed or deleted)")]
    Link { id: i64 },
    #[error("record {id}: its content does not match its hash (the record was changed)")]
    Content { id: i64 },
}

/// Verifies records in id order; returns how many are intact.
pub fn verify<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Result<u64, Broken> {
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    for r in records {
        let expected = n as i64 + 1;
        if r.id != expected {
            return Err(Broken::Gap { id: r.id, expected });
        }
        if r.prev_hash != prev {
            return Err(Broken::Link { id: r.id });
        }
        if hash(
            &r.prev_hash,
            r.id,
            r.at,
            &r.actor,
            &r.role,
            &r.action,
            &r.subject,
            &r.details,
        ) != r.hash
        {
            return Err(Broken::Content { id: r.id });
        }
        prev = r.hash.clone();
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|id| {
                let (actor, role, action, subject, details) =
                    ("张三", "duty", "alarm.ack", format!("alarm:{id}"), "{}");
                let h = hash(&prev, id, id * 10, actor, role, action, &subject, details);
                let r = AuditRecord {
                    id,
                    at: id * 10,
                    actor: actor.into(),
                    role: role.into(),
                    action: action.into(),
                    subject,
                    details: details.into(),
                    prev_hash: prev.clone(),
                    hash: h.clone(),
                };
                prev = h;
                r
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies_and_any_edit_is_named() {
        let c = chain(5);
        assert_eq!(verify(&c), Ok(5));
        assert_eq!(verify(&[]), Ok(0));
        let mut edited = c.clone();
        edited[2].actor = "李四".into();
        assert_eq!(verify(&edited), Err(Broken::Content { id: 3 }));
        let mut rehashed = c.clone();
        rehashed[2].details = "{\"forged\":1}".into();
        rehashed[2].hash = hash(
            &rehashed[2].prev_hash,
            3,
            30,
            "张三",
            "duty",
            "alarm.ack",
            "alarm:3",
            "{\"forged\":1}",
        );
        assert_eq!(
            verify(&rehashed),
            Err(Broken::Link { id: 4 }),
            "rehashing one record breaks the next link"
        );
        let mut deleted = c.clone();
        deleted.remove(1);
        assert_eq!(verify(&deleted), Err(Broken::Gap { id: 3, expected: 2 }));
        let mut last_deleted = c;
        last_deleted.pop();
        assert_eq!(
            verify(&last_deleted),
            Ok(4),
            "truncation at the end is caught by the store's count check"
        );
    }

    #[test]
    fn fields_cannot_be_shifted_between_each_other() {
        let a = hash(GENESIS, 1, 1, "ab", "c", "x", "y", "z");
        let b = hash(GENESIS, 1, 1, "a", "bc", "x", "y", "z");
        assert_ne!(a, b);
    }
}
