//! ed25519 identities: firm admins, operators, meters and nodes.
//!
//! Key files are PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the form
//! OpenSSL reads as an ED25519 private key. Public keys have one text form,
//! `ed25519:` followed by 64 lowercase hex digits, used in genesis files, the
//! CLI and logs; in the canonical encoding they are the raw 32 bytes.
//!
//! A node's key is also its libp2p identity; [`PublicKey::peer_id`] gives the
//! PeerId text that libp2p derives from it.
//!
//! This module does no I/O: reading and writing key files (with mode 0600)
//! is the binaries' job; [`check_key_file_mode`] is the shared rule.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("public key must be `{PUBLIC_KEY_PREFIX}` followed by 64 hex digits, got {0:?}")]
    BadPublicKeyText(String),
    #[error("not a valid ed25519 public key (not a curve point)")]
    InvalidPublicKey,
    /// The bytes decompress to a curve point, but that point's one encoding
    /// (RFC 8032 section 5.1.2) is other bytes: the y coordinate is not
    /// below p = 2^255 - 19, or x = 0 with the sign bit set. Accepting it
    /// would give one key two names, and RFC 8032 decoders refuse it.
    #[error(
        "public key {key} is not the canonical encoding of its curve point \
         (the y coordinate must be below 2^255 - 19, and the sign bit clear when x = 0); \
         that point is written {canonical}"
    )]
    NonCanonicalPublicKey {
        key: PublicKey,
        canonical: PublicKey,
    },
    #[error("signature does not verify")]
    BadSignature,
    #[error("not a PKCS#8 PEM ed25519 private key: {0}")]
    BadPrivateKeyFile(String),
    #[error("key file is readable by group or others (mode {mode:o}); run `chmod 600` on it")]
    KeyFileTooOpen { mode: u32 },
}

/// Most keys `PublicKey::from_bytes` remembers per thread.
pub const ACCEPTED_KEYS_CACHED: usize = 4096;

/// Most decompressed keys `PublicKey::verifying_key` remembers per thread.
pub const VERIFYING_KEYS_CACHED: usize = 4096;

thread_local! {
    /// Bytes `PublicKey::from_bytes` accepted on this thread.
    static ACCEPTED_KEYS: std::cell::RefCell<std::collections::BTreeSet<[u8; 32]>> =
        const { std::cell::RefCell::new(std::collections::BTreeSet::new()) };
    /// Keys `PublicKey::verifying_key` decompressed (and found canonical)
    /// on this thread.
    static VERIFYING_KEYS: std::cell::RefCell<std::collections::BTreeMap<[u8; 32], VerifyingKey>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

/// An ed25519 public key: 32 bytes, compressed Edwards point.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature: 64 bytes (R || s).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

/// A private key with its public half.
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// The keypair of a 32-byte secret seed (RFC 8032 private key).
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The 32-byte secret seed, e.g. to build the libp2p identity.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.signing.sign(message).to_bytes())
    }

    /// PKCS#8 v1 PEM (RFC 8410, the private key only), LF line endings:
    /// the form `openssl genpkey -algorithm ed25519` writes. OpenSSL 3.0
    /// refuses the v2 form with the public key embedded.
    pub fn to_pkcs8_pem(&self) -> String {
        let bytes = KeypairBytes {
            secret_key: self.signing.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 encoding of a valid ed25519 key cannot fail")
            .to_string()
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<Keypair, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|signing| Keypair { signing })
            .map_err(|e| KeyError::BadPrivateKeyFile(e.to_string()))
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "Keypair({})", self.public())
    }
}

/// Key files must not be readable by group or others, as ssh insists.
/// `mode` is the Unix permission bits of the file.
pub fn check_key_file_mode(mode: u32) -> Result<(), KeyError> {
    if mode & 0o077 != 0 {
        return Err(KeyError::KeyFileTooOpen { mode: mode & 0o777 });
    }
    Ok(())
}

impl PublicKey {
    /// The public key of these 32 bytes, refusing a non-canonical encoding
    /// of a curve point ([`KeyError::NonCanonicalPublicKey`]). Bytes that
    /// are no curve point at all pass here (they have no other encoding, so
    /// they cannot alias another key); [`PublicKey::validate`] and
    /// [`PublicKey::verify`] refuse them. Every way in (the text form, serde
    /// in both forms) goes through this check.
    ///
    /// The check costs two field exponentiations, and a ledger has few
    /// keys, each decoded again and again (every transaction's signer,
    /// state records): the bytes accepted are remembered per thread (at
    /// most [`ACCEPTED_KEYS_CACHED`]; a pure function's answers, so the
    /// cache changes nothing but time).
    pub fn from_bytes(bytes: [u8; 32]) -> Result<PublicKey, KeyError> {
        if ACCEPTED_KEYS.with(|cache| cache.borrow().contains(&bytes)) {
            return Ok(PublicKey(bytes));
        }
        let key = PublicKey(bytes);
        match key.verifying_key() {
            Ok(_) | Err(KeyError::InvalidPublicKey) => {
                ACCEPTED_KEYS.with(|cache| {
                    let mut cache = cache.borrow_mut();
                    if cache.len() >= ACCEPTED_KEYS_CACHED {
                        cache.clear();
                    }
                    cache.insert(bytes);
                });
                Ok(key)
            }
            Err(error) => Err(error),
        }
    }

    /// The decompressed key. Refuses bytes that are not a curve point, and
    /// non-canonical encodings (a `PublicKey` built directly from its public
    /// field has skipped [`PublicKey::from_bytes`]).
    ///
    /// Decompressing and compressing again cost a fifth of a signature
    /// check, for keys a ledger has few of: the keys that pass are
    /// remembered per thread (at most [`VERIFYING_KEYS_CACHED`]; a pure
    /// function's answers, so the cache changes nothing but time).
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        if let Some(key) = VERIFYING_KEYS.with(|cache| cache.borrow().get(&self.0).copied()) {
            return Ok(key);
        }
        let key = self.decompress()?;
        VERIFYING_KEYS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.len() >= VERIFYING_KEYS_CACHED {
                cache.clear();
            }
            cache.insert(self.0, key);
        });
        Ok(key)
    }

    /// `verifying_key` without the cache.
    fn decompress(&self) -> Result<VerifyingKey, KeyError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::InvalidPublicKey)?;
        // Compressing the decompressed point gives its one encoding.
        let canonical = PublicKey(VerifyingKey::from(key.to_edwards()).to_bytes());
        if canonical != *self {
            return Err(KeyError::NonCanonicalPublicKey {
                key: *self,
                canonical,
            });
        }
        Ok(key)
    }

    /// Whether these bytes are a usable public key: the canonical encoding
    /// of a curve point that is not of small order.
    pub fn validate(&self) -> Result<(), KeyError> {
        let key = self.verifying_key()?;
        if key.is_weak() {
            return Err(KeyError::InvalidPublicKey);
        }
        Ok(())
    }

    /// Strict RFC 8032 verification (`verify_strict`): rejects small-order
    /// keys, non-canonical key encodings and non-canonical signatures. This is the ledger's validity
    /// rule; every node and the auditor decide with it.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let key = self.verifying_key()?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &signature)
            .map_err(|_| KeyError::BadSignature)
    }

    /// The libp2p PeerId of this key, in its usual base58 text form.
    ///
    /// libp2p encodes an ed25519 public key as the protobuf
    /// `PublicKey { Type: Ed25519 (1), Data: key }` = `08 01 12 20 <32 bytes>`,
    /// and keys of at most 42 bytes use the identity multihash `00 24 <36 bytes>`.
    pub fn peer_id(&self) -> String {
        let mut multihash = Vec::with_capacity(38);
        multihash.extend_from_slice(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
        multihash.extend_from_slice(&self.0);
        base58(&multihash)
    }
}

/// Batch verification for admission paths (mempool, gossip): one pass
/// over all signatures, and on failure the index of each bad one.
///
/// Returns `Ok(())` when every signature verifies. The batch equation
/// skips checks that strict verification makes (a small-order `R` passes),
/// and its coefficients are derived deterministically from the batch, so a
/// crafted signature may pass a batch yet fail alone. A batch result is
/// therefore only a fast accept for admission: the consensus-critical rule
/// is [`PublicKey::verify`], which block execution and the auditor apply to
/// each transaction.
pub fn verify_batch(items: &[(&[u8], PublicKey, Signature)]) -> Result<(), Vec<usize>> {
    let mut keys = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for (index, (_, key, _)) in items.iter().enumerate() {
        match key.verifying_key() {
            Ok(k) if !k.is_weak() => keys.push(k),
            _ => bad.push(index),
        }
    }
    if bad.is_empty() {
        let messages: Vec<&[u8]> = items.iter().map(|(m, _, _)| *m).collect();
        let signatures: Vec<ed25519_dalek::Signature> = items
            .iter()
            .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
            .collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return Ok(());
        }
    }
    // Some signature is bad: find out which, one by one.
    let bad: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, (message, key, signature))| key.verify(message, signature).is_err())
        .map(|(index, _)| index)
        .collect();
    if bad.is_empty() { Ok(()) } else { Err(bad) }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_KEY_PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<PublicKey, KeyError> {
        let bad = || KeyError::BadPublicKeyText(text.to_string());
        let digits = text.strip_prefix(PUBLIC_KEY_PREFIX).ok_or_else(bad)?;
        // Only lowercase: one key, one text.
        if digits.len() != 64 || digits.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(digits, &mut bytes).map_err(|_| bad())?;
        PublicKey::from_bytes(bytes)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PublicKey, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            // In the canonical codec this surfaces as `CodecError::Malformed`
            // with the key error's text.
            PublicKey::from_bytes(<[u8; 32]>::deserialize(deserializer)?)
                .map_err(serde::de::Error::custom)
        }
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(self.0))
        } else {
            crate::codec::byte_array::serialize(&self.0, serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Signature, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            let mut bytes = [0u8; 64];
            hex::decode_to_slice(&text, &mut bytes).map_err(serde::de::Error::custom)?;
            Ok(Signature(bytes))
        } else {
            Ok(Signature(crate::codec::byte_array::deserialize(
                deserializer,
            )?))
        }
    }
}

/// Bitcoin-alphabet base58, as libp2p prints PeerIds.
fn base58(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    // Base-58 digits, least significant first.
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
    for &byte in &bytes[zeros..] {
        let mut carry = byte as u32;
        for digit in digits.iter_mut() {
            carry += (*digit as u32) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut text = String::with_capacity(zeros + digits.len());
    text.extend(std::iter::repeat_n('1', zeros));
    text.extend(digits.iter().rev().map(|&d| ALPHABET[d as usize] as char));
    text
}
