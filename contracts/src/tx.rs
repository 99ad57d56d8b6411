//! Signed transactions: what firms, operators and meters put on the ledger.
//!
//! `SignedTx { body, signer, signature }`. The signature covers
//! `encode((TX_DOMAIN, body))`, and the body begins with the chain id, so a
//! transaction can be neither replayed on another network nor confused with
//! a consensus vote (which is signed under its own domain tag). Each signer
//! numbers its transactions 1, 2, 3, ...: a nonce is valid when it is exactly
//! the previous one plus one. The tx id is blake3 of the canonical encoding
//! of the whole signed transaction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::genesis::ResourceKind;
use crate::hash::Hash;
use crate::keys::{Keypair, PublicKey, Signature, verify_batch};
pub use crate::kinds::{Account, ContractTerms, GovAction, ListingTerms};

/// Domain separation tag of transaction signatures.
pub const TX_DOMAIN: &str = "symbiont/tx/v1";

/// Largest canonical encoding of a signed transaction, in bytes.
pub const MAX_TX_BYTES: usize = 64 * 1024;

/// The role an admin grants to a key of its firm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KeyRole {
    /// Posts offers and requests, signs contracts, settles.
    Operator,
    /// A metering device: signs delivered quantities and check readings.
    Meter,
}

/// What a transaction does. The application gives each kind its meaning.
// Transactions are decoded and executed one at a time, so the size of the
// largest variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxKind {
    /// A firm's admin key grants `role` to `key`.
    AuthorizeKey {
        firm: String,
        key: PublicKey,
        role: KeyRole,
    },
    /// A firm's admin key withdraws a key it granted.
    RevokeKey {
        firm: String,
        key: PublicKey,
    },

    // Variants below are appended only: the variant index is part of the
    // canonical encoding. The acting firm is the signer's firm.
    /// A firm's admin proposes a governance action; counts as its yes vote.
    Propose {
        action: GovAction,
        expires_ms: u64,
    },
    /// A firm's admin votes on an open proposal.
    Vote {
        proposal: Hash,
        approve: bool,
    },
    /// A facilitator's admin registers a resource kind.
    RegisterKind {
        kind: ResourceKind,
    },
    /// A facilitator's admin records a firm's licence to take a waste code.
    GrantLicence {
        firm: String,
        ewc_code: String,
        expires_ms: u64,
    },
    /// Supply on the market.
    PostOffer {
        listing: ListingTerms,
    },
    /// Demand on the market.
    PostRequest {
        listing: ListingTerms,
    },
    /// Another firm takes an open listing.
    Accept {
        listing: Hash,
    },
    /// The owner closes an open listing.
    Withdraw {
        listing: Hash,
    },
    /// One party proposes a contract; the other countersigns.
    ProposeContract {
        terms: ContractTerms,
    },
    Countersign {
        contract: Hash,
    },
    /// Both parties (each once), or the arbiter alone, end a contract.
    Terminate {
        contract: Hash,
    },
    /// The supplier's declared availability A for a period.
    RecordAvailability {
        contract: Hash,
        period: u32,
        quantity: u64,
    },
    /// The billing meter's delivered quantity D for a period.
    RecordDelivery {
        contract: Hash,
        period: u32,
        quantity: u64,
    },
    /// The check meter's reading C for a period.
    RecordCheck {
        contract: Hash,
        period: u32,
        quantity: u64,
    },
    /// A party settles a finished period.
    SettlePeriod {
        contract: Hash,
        period: u32,
    },
    /// The payee acknowledges a payment, clearing that much of an obligation.
    AcknowledgePayment {
        payer: Account,
        payee: Account,
        amount: i64,
    },
    /// Create a pool with sharing keys (member firm id -> basis points).
    CreatePool {
        name: String,
        keys: BTreeMap<String, u16>,
        start_ms: u64,
        period_ms: u64,
    },
    /// A member posts income it collected (positive) or a cost it paid
    /// (negative) for the pool in a period.
    PostPoolAmount {
        pool: Hash,
        period: u32,
        amount: i64,
    },
    /// Split a finished pool period among the members.
    SplitPool {
        pool: Hash,
        period: u32,
    },
    /// A party disputes a period.
    OpenDispute {
        contract: Hash,
        period: u32,
        reason: String,
    },
    /// The arbiter resolves a dispute: `adjustment` (minor units) is added
    /// to the period's net (positive: the consumer owes the supplier more).
    ResolveDispute {
        contract: Hash,
        period: u32,
        adjustment: i64,
    },
    /// A member firm's admin joins a pool: from then on the pool binds the
    /// firm. The pool is active once every member has joined.
    JoinPool {
        pool: Hash,
    },
    /// Another member objects to an amount posted in a period not yet
    /// split (`posting`: the tx id of the `PostPoolAmount`); the amount is
    /// left out of the split unless a facilitator accepts it.
    ObjectPoolAmount {
        pool: Hash,
        period: u32,
        posting: Hash,
    },
    /// A facilitator resolves an objection before the split: `accept`
    /// puts the amount back into the split, otherwise it stays out.
    ResolvePoolObjection {
        pool: Hash,
        period: u32,
        posting: Hash,
        accept: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxBody {
    pub chain_id: String,
    /// Exactly the signer's previous nonce + 1; the first is 1.
    pub nonce: u64,
    pub kind: TxKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    pub body: TxBody,
    pub signer: PublicKey,
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("transaction is {len} bytes, more than the limit of {limit}")]
    Oversize { len: usize, limit: usize },
    #[error("malformed transaction: {0}")]
    Malformed(CodecError),
    #[error("transaction is for chain {got:?}, this is chain {expected:?}")]
    WrongChainId { expected: String, got: String },
    #[error("bad signature by {signer}")]
    BadSignature { signer: PublicKey },
    #[error("bad nonce {got} from {signer}: expected {expected}")]
    BadNonce {
        signer: PublicKey,
        expected: u64,
        got: u64,
    },
    #[error("signer {signer} has used every nonce")]
    NonceExhausted { signer: PublicKey },
}

impl TxError {
    /// A stable code for receipts, logs and the gRPC API.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::Oversize { .. } => "oversize",
            TxError::Malformed(_) => "malformed",
            TxError::WrongChainId { .. } => "wrong_chain_id",
            TxError::BadSignature { .. } => "bad_signature",
            TxError::BadNonce { .. } => "bad_nonce",
            TxError::NonceExhausted { .. } => "nonce_exhausted",
        }
    }
}

impl TxBody {
    /// The bytes a signer signs.
    pub fn sign_bytes(&self) -> Vec<u8> {
        codec::encode(&(TX_DOMAIN, self))
    }
}

impl SignedTx {
    pub fn sign(body: TxBody, keypair: &Keypair) -> SignedTx {
        let signature = keypair.sign(&body.sign_bytes());
        SignedTx {
            body,
            signer: keypair.public(),
            signature,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn id(&self) -> Hash {
        codec::hash(self)
    }

    /// Decode a transaction received from outside and check everything that
    /// needs no state: size, encoding, chain id and signature.
    pub fn from_bytes_verified(bytes: &[u8], chain_id: &str) -> Result<SignedTx, TxError> {
        let tx = Self::from_bytes(bytes)?;
        tx.verify(chain_id)?;
        Ok(tx)
    }

    /// Decode without verifying (size and encoding only).
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedTx, TxError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(TxError::Oversize {
                len: bytes.len(),
                limit: MAX_TX_BYTES,
            });
        }
        codec::decode_with_limit(bytes, MAX_TX_BYTES).map_err(TxError::Malformed)
    }

    /// Stateless checks: size, chain id, signature (strict).
    pub fn verify(&self, chain_id: &str) -> Result<(), TxError> {
        self.check_envelope(chain_id)?;
        self.signer
            .verify(&self.body.sign_bytes(), &self.signature)
            .map_err(|_| TxError::BadSignature {
                signer: self.signer,
            })
    }

    /// The checks of `verify` but the signature: size and chain id.
    pub fn check_envelope(&self, chain_id: &str) -> Result<(), TxError> {
        self.check_envelope_encoded(self.to_bytes().len(), chain_id)
    }

    /// `check_envelope` given the length of `to_bytes()`, for a caller that
    /// encoded the transaction already (to hash it).
    pub fn check_envelope_encoded(&self, len: usize, chain_id: &str) -> Result<(), TxError> {
        if len > MAX_TX_BYTES {
            return Err(TxError::Oversize {
                len,
                limit: MAX_TX_BYTES,
            });
        }
        if self.body.chain_id != chain_id {
            return Err(TxError::WrongChainId {
                expected: chain_id.to_string(),
                got: self.body.chain_id.clone(),
            });
        }
        Ok(())
    }

    /// The nonce rule, given the signer's last accepted nonce (None: none yet).
    pub fn check_nonce(&self, last_nonce: Option<u64>) -> Result<(), TxError> {
        let expected = match last_nonce {
            None => 1,
            Some(last) => last.checked_add(1).ok_or(TxError::NonceExhausted {
                signer: self.signer,
            })?,
        };
        if self.body.nonce != expected {
            return Err(TxError::BadNonce {
                signer: self.signer,
                expected,
                got: self.body.nonce,
            });
        }
        Ok(())
    }
}

/// Stateless checks of many transactions at once, for admission paths: the
/// signatures go through one batch verification. Returns one result per
/// transaction, in order. Same verdicts as calling [`SignedTx::verify`] on
/// each, except for crafted signatures that only batch verification
/// accepts (see [`verify_batch`]); block execution uses `verify`.
pub fn verify_txs(txs: &[SignedTx], chain_id: &str) -> Vec<Result<(), TxError>> {
    let mut results: Vec<Result<(), TxError>> =
        txs.iter().map(|tx| tx.check_envelope(chain_id)).collect();
    let candidates: Vec<usize> = (0..txs.len()).filter(|&i| results[i].is_ok()).collect();
    let sign_bytes: Vec<Vec<u8>> = candidates
        .iter()
        .map(|&i| txs[i].body.sign_bytes())
        .collect();
    let items: Vec<(&[u8], PublicKey, Signature)> = candidates
        .iter()
        .zip(&sign_bytes)
        .map(|(&i, bytes)| (bytes.as_slice(), txs[i].signer, txs[i].signature))
        .collect();
    if let Err(bad) = verify_batch(&items) {
        for position in bad {
            let index = candidates[position];
            results[index] = Err(TxError::BadSignature {
                signer: txs[index].signer,
            });
        }
    }
    results
}
