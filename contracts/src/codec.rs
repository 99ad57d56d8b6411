//! The one canonical encoding of everything Symbiont signs or hashes.
//!
//! Every signed or hashed byte string in the system comes from [`encode`].
//! It is bincode 2 driven through serde with one fixed configuration:
//! little-endian, fixed-width integers (u64 is always 8 bytes), lengths as
//! u64, enum variants as u32 indices, `Option` as a 0/1 byte. The exact
//! rules are in `docs/ledger-format.md`; the golden vectors in this crate's
//! tests pin them, so swapping the serializer cannot change a byte unnoticed.
//!
//! Decoding is strict: it rejects trailing bytes, non-canonical input, lengths that would exceed
//! [`MAX_DECODE_BYTES`] (before allocating), unknown enum variants, invalid UTF-8 and booleans
//! other than 0 or 1, each with a typed [`CodecError`]. It never panics on
//! arbitrary input (see the proptest in `tests/codec.rs`).

use serde::{Serialize, de::DeserializeOwned};

use crate::hash::Hash;

/// Upper bound on the bytes one `decode` call may consume. Larger inputs
/// are rejected before any allocation is made for them.
pub const MAX_DECODE_BYTES: usize = 16 * 1024 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<MAX_DECODE_BYTES>,
>;

const CONFIG: Config = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding()
    .with_limit::<MAX_DECODE_BYTES>();

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("input is {len} bytes, more than the limit of {limit}")]
    Oversize { len: usize, limit: usize },
    #[error("a length in the input claims more than the limit of {limit} bytes")]
    DeclaredLengthTooLarge { limit: usize },
    #[error("{trailing} trailing bytes after a complete value")]
    TrailingBytes { trailing: usize },
    #[error("input ends early: {needed} more bytes needed")]
    UnexpectedEnd { needed: usize },
    #[error(
        "not the canonical encoding of the value it decodes to (e.g. map keys out of order or repeated)"
    )]
    NonCanonical,
    #[error("unknown enum variant: {detail}")]
    UnknownVariant { detail: String },
    #[error("malformed input: {detail}")]
    Malformed { detail: String },
}

/// The canonical bytes of `value`.
///
/// Encoding our own types cannot fail: they are plain data with derived
/// `Serialize`, and the size limit applies to decoding only.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Room for a key, a transaction or a state record without growing
    // (bincode's own `encode_to_vec` starts empty and reallocates as
    // bytes arrive; an export's audit spent a tenth of its time there).
    let mut out = Vec::with_capacity(ENCODE_CAPACITY_BYTES);
    bincode::serde::encode_into_std_write(value, &mut out, CONFIG)
        .expect("canonical encoding of a plain-data type cannot fail");
    out
}

/// The buffer `encode` starts with.
const ENCODE_CAPACITY_BYTES: usize = 256;

/// Decode exactly one value from all of `bytes`.
pub fn decode<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_with_limit(bytes, MAX_DECODE_BYTES)
}

/// Like [`decode`], with a tighter bound on the input size (for messages
/// whose own limit is below [`MAX_DECODE_BYTES`], such as transactions).
pub fn decode_with_limit<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, CodecError> {
    let limit = limit.min(MAX_DECODE_BYTES);
    if bytes.len() > limit {
        return Err(CodecError::Oversize {
            len: bytes.len(),
            limit,
        });
    }
    let (value, consumed) =
        bincode::serde::decode_from_slice::<T, _>(bytes, CONFIG).map_err(classify)?;
    if consumed != bytes.len() {
        return Err(CodecError::TrailingBytes {
            trailing: bytes.len() - consumed,
        });
    }
    // One value, one encoding: a map whose keys arrive out of order, or
    // twice, decodes to a value that encodes differently. Refuse it, so
    // that bytes seen on the wire are always the bytes that get hashed.
    if encode(&value) != bytes {
        return Err(CodecError::NonCanonical);
    }
    Ok(value)
}

/// Decode a record the state stored: like [`decode`], without encoding the
/// value again to compare. The state holds only bytes `encode` wrote
/// (`State::put`, or storage filled from its write sets), so they are
/// canonical already; input from outside goes through [`decode`].
pub(crate) fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, consumed) =
        bincode::serde::decode_from_slice::<T, _>(bytes, CONFIG).map_err(classify)?;
    if consumed != bytes.len() {
        return Err(CodecError::TrailingBytes {
            trailing: bytes.len() - consumed,
        });
    }
    Ok(value)
}

/// blake3 of the canonical encoding of `value`.
pub fn hash<T: Serialize + ?Sized>(value: &T) -> Hash {
    Hash::of_bytes(&encode(value))
}

fn classify(error: bincode::error::DecodeError) -> CodecError {
    use bincode::error::DecodeError as E;
    match error {
        E::UnexpectedEnd { additional } => CodecError::UnexpectedEnd { needed: additional },
        E::LimitExceeded => CodecError::DeclaredLengthTooLarge {
            limit: MAX_DECODE_BYTES,
        },
        E::UnexpectedVariant {
            found, type_name, ..
        } => CodecError::UnknownVariant {
            detail: format!("{type_name}: variant {found}"),
        },
        // Serde-derived enums report an out-of-range variant index as a
        // custom message; keep it typed.
        other => {
            let detail = other.to_string();
            if detail.contains("variant index") || detail.contains("unknown variant") {
                CodecError::UnknownVariant { detail }
            } else {
                CodecError::Malformed { detail }
            }
        }
    }
}

/// Serde helper for fixed byte arrays longer than 32 (serde's own limit):
/// encodes as a tuple, i.e. the raw bytes with no length prefix.
pub(crate) mod byte_array {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(N)?;
        for byte in bytes {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        struct ArrayVisitor<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
            type Value = [u8; N];
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
                let mut out = [0u8; N];
                for (index, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(index, &self))?;
                }
                Ok(out)
            }
        }
        deserializer.deserialize_tuple(N, ArrayVisitor::<N>)
    }
}
