//! Pools: shared infrastructure whose net income is split by sharing keys.
//!
//! Keys are basis points summing to exactly 10000. A net amount N is split
//! by the largest-remainder method: each member gets floor(|N|·key/10000);
//! the units left over go one each to the members with the largest
//! remainders (|N|·key mod 10000), ties broken by ascending member id; then
//! the sign of N is applied. The parts always add up to N.

use std::collections::BTreeMap;

use crate::settlement::BASIS_POINTS;

/// At most this many members in one pool: a bound on work per split.
pub const MAX_POOL_MEMBERS: usize = 64;
/// At most this many postings in one pool period: a bound on what members
/// can grow and on work per split.
pub const MAX_POOL_POSTINGS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("a pool needs at least one member")]
    NoMembers,
    #[error("a pool has at most {MAX_POOL_MEMBERS} members, got {count}")]
    TooManyMembers { count: usize },
    #[error("member {member:?} has a sharing key of 0 basis points")]
    ZeroKey { member: String },
    #[error("sharing keys sum to {sum} basis points, not 10000")]
    KeysNotWhole { sum: u64 },
}

impl PoolError {
    pub fn code(&self) -> &'static str {
        match self {
            PoolError::NoMembers => "pool_no_members",
            PoolError::TooManyMembers { .. } => "pool_too_many_members",
            PoolError::ZeroKey { .. } => "pool_zero_key",
            PoolError::KeysNotWhole { .. } => "keys_not_10000",
        }
    }
}

/// Check sharing keys: 1 to [`MAX_POOL_MEMBERS`] members, each key above
/// 0, summing to exactly 10000.
pub fn validate_keys(keys: &BTreeMap<String, u16>) -> Result<(), PoolError> {
    if keys.is_empty() {
        return Err(PoolError::NoMembers);
    }
    if keys.len() > MAX_POOL_MEMBERS {
        return Err(PoolError::TooManyMembers { count: keys.len() });
    }
    if let Some((member, _)) = keys.iter().find(|(_, key)| **key == 0) {
        return Err(PoolError::ZeroKey {
            member: member.clone(),
        });
    }
    let sum: u64 = keys.values().map(|&key| key as u64).sum();
    if sum != BASIS_POINTS as u64 {
        return Err(PoolError::KeysNotWhole { sum });
    }
    Ok(())
}

/// Sharing keys from a TOML document: a `[keys]` table of member id =
/// basis points, validated.
pub fn keys_from_toml(text: &str) -> Result<BTreeMap<String, u16>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct KeysFile {
        keys: BTreeMap<String, u16>,
    }
    let file: KeysFile = toml::from_str(text).map_err(|e| e.to_string())?;
    validate_keys(&file.keys).map_err(|e| e.to_string())?;
    Ok(file.keys)
}

/// Each member's part of `amount`, in ascending member id order.
pub fn split(amount: i64, keys: &BTreeMap<String, u16>) -> Result<Vec<(String, i64)>, PoolError> {
    validate_keys(keys)?;
    let whole = BASIS_POINTS as i128;
    let magnitude = (amount as i128).abs(); // |i64::MIN| fits in i128
    // (member, floor part, remainder); with magnitude < 2^64 and key <=
    // 10000 nothing here can overflow i128.
    let mut parts: Vec<(&String, i128, i128)> = keys
        .iter()
        .map(|(member, &key)| {
            let share = magnitude * key as i128;
            (member, share / whole, share % whole)
        })
        .collect();
    let floors: i128 = parts.iter().map(|(_, floor, _)| floor).sum();
    let left_over = magnitude - floors;
    // Each remainder is below 10000, so fewer units are left than members.
    assert!((0..parts.len() as i128).contains(&left_over));

    let mut order: Vec<usize> = (0..parts.len()).collect();
    // Largest remainder first; ties by ascending member id (the map order).
    order.sort_by(|&a, &b| parts[b].2.cmp(&parts[a].2).then(a.cmp(&b)));
    for &index in order.iter().take(left_over as usize) {
        parts[index].1 += 1;
    }

    let sign = if amount < 0 { -1 } else { 1 };
    let result: Vec<(String, i64)> = parts
        .into_iter()
        .map(|(member, part, _)| {
            let signed = i64::try_from(sign * part).expect("a part is at most |amount|");
            (member.clone(), signed)
        })
        .collect();
    let total: i128 = result.iter().map(|(_, part)| *part as i128).sum();
    assert_eq!(total, amount as i128, "pool parts must add up to the whole");
    Ok(result)
}
