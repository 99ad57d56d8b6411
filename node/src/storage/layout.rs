//! The on-disk layout (`docs/storage.md` describes it): names, key
//! encodings, and the fixed-size records. Public so that tests and tools can
//! read (or, in tests, damage) a data dir; only [`super::Storage`] writes.

use symbiont_contracts::Hash;

use super::Tip;

/// Bumped when the layout changes; open refuses any other.
pub const FORMAT_VERSION: u32 = 1;
/// The exclusive lock file, in the data dir.
pub const LOCK_FILE: &str = "LOCK";
/// sled's own directory, in the data dir.
pub const SLED_DIR: &str = "sled";
/// sled's main file, in [`SLED_DIR`]; sled holds an flock on it while open.
pub const SLED_DB_FILE: &str = "db";
/// The one tree that holds everything.
pub const TREE: &str = "ledger";

/// Format version: u32 big-endian.
pub const META_FORMAT: &[u8] = b"m:format";
/// Genesis hash: 32 bytes.
pub const META_GENESIS: &[u8] = b"m:genesis";
/// The tip and the state checksum: [`TIP_RECORD_BYTES`], see [`TipRecord`].
pub const META_TIP: &[u8] = b"m:tip";

/// The first byte of every key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Prefix {
    /// `b` + height u64 BE: canonical block bytes.
    Block = b'b',
    /// `c` + height u64 BE: canonical commit certificate bytes.
    Certificate = b'c',
    /// `h` + height u64 BE: block hash (32) + app hash after it (32).
    Hash = b'h',
    /// `m:` + name: the meta records above.
    Meta = b'm',
    /// `s` + the application's canonical key bytes: the record bytes.
    State = b's',
    /// `e` + height u64 BE: the height's events (`crate::events`), derived
    /// data, not hashed. Absent for heights stored by a build before
    /// events were recorded, and for heights committed without them.
    Events = b'e',
}

pub fn height_key(prefix: Prefix, height: u64) -> [u8; 9] {
    assert!(
        matches!(
            prefix,
            Prefix::Block | Prefix::Certificate | Prefix::Hash | Prefix::Events
        ),
        "{prefix:?} keys are not heights"
    );
    let mut key = [0u8; 9];
    key[0] = prefix as u8;
    key[1..].copy_from_slice(&height.to_be_bytes());
    key
}

pub fn state_key(app_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + app_key.len());
    key.push(Prefix::State as u8);
    key.extend_from_slice(app_key);
    key
}

/// The height of a `b`, `c`, `h` or `e` key.
pub fn decode_height_key(key: &[u8]) -> Result<u64, String> {
    let bytes: [u8; 8] = key
        .get(1..)
        .and_then(|rest| rest.try_into().ok())
        .ok_or_else(|| format!("a height key is 9 bytes, this one is {}", key.len()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// A key as a person reads it in an error message.
pub fn describe_key(key: &[u8]) -> String {
    let height = || decode_height_key(key).map_or_else(|_| "?".to_string(), |h| h.to_string());
    match key.first() {
        Some(b'b') => format!("block {} (key {})", height(), hex::encode(key)),
        Some(b'c') => format!("certificate {} (key {})", height(), hex::encode(key)),
        Some(b'h') => format!("hash record {} (key {})", height(), hex::encode(key)),
        Some(b'e') => format!("events {} (key {})", height(), hex::encode(key)),
        Some(b'm') => format!("meta record {}", String::from_utf8_lossy(key)),
        Some(b's') => format!("state record (key {})", hex::encode(key)),
        _ => format!("unknown key {}", hex::encode(key)),
    }
}

pub fn decode_u32(bytes: &[u8]) -> Result<u32, String> {
    let bytes: [u8; 4] = bytes
        .try_into()
        .map_err(|_| format!("4 bytes expected, found {}", bytes.len()))?;
    Ok(u32::from_be_bytes(bytes))
}

pub fn decode_hash(bytes: &[u8]) -> Result<Hash, String> {
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("a 32-byte hash expected, found {} bytes", bytes.len()))?;
    Ok(Hash(bytes))
}

pub fn encode_hashes(block_hash: &Hash, app_hash: &Hash) -> [u8; 64] {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&block_hash.0);
    bytes[32..].copy_from_slice(&app_hash.0);
    bytes
}

/// (block hash, app hash).
pub fn decode_hashes(bytes: &[u8]) -> Result<(Hash, Hash), String> {
    if bytes.len() != 64 {
        return Err(format!("64 bytes expected, found {}", bytes.len()));
    }
    Ok((decode_hash(&bytes[..32])?, decode_hash(&bytes[32..])?))
}

pub const TIP_RECORD_BYTES: usize = 8 + 32 + 32 + 8 + 32;

/// The `m:tip` record: height u64 BE, block hash, app hash, state record
/// count u64 BE, state checksum (32 bytes, little-endian 256-bit sum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TipRecord {
    pub tip: Tip,
    pub digest: StateDigest,
}

impl TipRecord {
    pub fn encode(&self) -> [u8; TIP_RECORD_BYTES] {
        let mut bytes = [0u8; TIP_RECORD_BYTES];
        bytes[0..8].copy_from_slice(&self.tip.height.to_be_bytes());
        bytes[8..40].copy_from_slice(&self.tip.block_hash.0);
        bytes[40..72].copy_from_slice(&self.tip.app_hash.0);
        bytes[72..80].copy_from_slice(&self.digest.count.to_be_bytes());
        bytes[80..112].copy_from_slice(&self.digest.sum);
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<TipRecord, String> {
        let bytes: &[u8; TIP_RECORD_BYTES] = bytes
            .try_into()
            .map_err(|_| format!("{TIP_RECORD_BYTES} bytes expected, found {}", bytes.len()))?;
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(word)
        };
        let hash_at = |at: usize| {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&bytes[at..at + 32]);
            hash
        };
        Ok(TipRecord {
            tip: Tip {
                height: u64_at(0),
                block_hash: Hash(hash_at(8)),
                app_hash: Hash(hash_at(40)),
            },
            digest: StateDigest {
                count: u64_at(72),
                sum: hash_at(80),
            },
        })
    }
}

/// Keys the per-record hash so that it means nothing elsewhere.
const RECORD_HASH_CONTEXT: &str = "symbiont storage v1 state record";

/// Checksum of a set of state records: their number, and the sum modulo
/// 2^256 of blake3-derive-key(context, key length u64 BE ++ key ++ value)
/// over them. Order-independent, so it is updated per write: a record's
/// hash is added when it is written and subtracted when it is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateDigest {
    pub count: u64,
    /// Little-endian.
    pub sum: [u8; 32],
}

impl StateDigest {
    pub const EMPTY: StateDigest = StateDigest {
        count: 0,
        sum: [0; 32],
    };

    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        // More records than u64 cannot exist on one disk.
        self.count = self
            .count
            .checked_add(1)
            .expect("state record count overflows");
        self.sum = add_256(&self.sum, &record_hash(key, value));
    }

    /// Removes a record that was added before.
    pub fn remove(&mut self, key: &[u8], value: &[u8]) {
        // Called only for a record read from the tree, which the count
        // covers; a count that says otherwise is caught at the next open.
        self.count = self.count.wrapping_sub(1);
        self.sum = sub_256(&self.sum, &record_hash(key, value));
    }
}

fn record_hash(key: &[u8], value: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(RECORD_HASH_CONTEXT);
    hasher.update(&(key.len() as u64).to_be_bytes());
    hasher.update(key);
    hasher.update(value);
    *hasher.finalize().as_bytes()
}

fn add_256(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let total = a[i] as u16 + b[i] as u16 + carry;
        out[i] = total as u8;
        carry = total >> 8;
    }
    out
}

fn sub_256(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in 0..32 {
        let mut total = a[i] as i16 - b[i] as i16 - borrow;
        borrow = 0;
        if total < 0 {
            total += 256;
            borrow = 1;
        }
        out[i] = total as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_add_then_remove_is_empty() {
        let mut digest = StateDigest::EMPTY;
        digest.add(b"a", b"1");
        digest.add(b"b", b"2");
        digest.remove(b"a", b"1");
        digest.remove(b"b", b"2");
        assert_eq!(digest, StateDigest::EMPTY);
    }

    #[test]
    fn digest_is_order_independent() {
        let mut forward = StateDigest::EMPTY;
        forward.add(b"a", b"1");
        forward.add(b"b", b"2");
        let mut backward = StateDigest::EMPTY;
        backward.add(b"b", b"2");
        backward.add(b"a", b"1");
        assert_eq!(forward, backward);
        // The key length separates key from value.
        let mut shifted = StateDigest::EMPTY;
        shifted.add(b"a1", b"");
        shifted.add(b"b", b"2");
        assert_ne!(forward, shifted);
    }

    #[test]
    fn tip_record_round_trip() {
        let record = TipRecord {
            tip: Tip {
                height: 7,
                block_hash: Hash([1; 32]),
                app_hash: Hash([2; 32]),
            },
            digest: StateDigest {
                count: 3,
                sum: [4; 32],
            },
        };
        assert_eq!(TipRecord::decode(&record.encode()), Ok(record));
        assert!(TipRecord::decode(&record.encode()[1..]).is_err());
    }
}
