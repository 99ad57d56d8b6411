//! The simulator's instantiation of the core: small integer addresses,
//! blocks that carry the previous height's commit certificate, and cheap keyed-hash
//! "signatures" (the simulator's Byzantine code only signs with its own
//! key; real ed25519 would make each seed a hundred times slower).

use serde::{Deserialize, Serialize};
use symbiont_contracts::codec;

use crate::consensus::signed::CommitCertificate;
use crate::consensus::types::{Context, Height, Round, ValidatorSet};

/// SplitMix64: the simulator's only source of randomness, seeded once.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high);
        let span = high - low + 1;
        if span == 0 {
            return self.next_u64();
        }
        low + self.next_u64() % span
    }

    /// True with probability `permille / 1000`.
    pub fn chance(&mut self, permille: u64) -> bool {
        self.next_u64() % 1000 < permille
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }
}

/// The SplitMix64 finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

pub type Address = u16;

/// A simulated block: a header and an opaque payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimBlock {
    pub height: Height,
    pub proposer: Address,
    pub payload: u64,
    /// The proposer's clock when it made the block (simulated ms); after
    /// the previous block's.
    pub time_ms: u64,
    /// The commit certificate of the previous height (none at height 1):
    /// its round says which proposers missed their turn.
    pub last_commit: Option<SimCertificate>,
}

/// A `CommitCertificate<SimContext>` as a block carries it (a plain struct,
/// so the block type does not refer to its own context).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCertificate {
    pub height: Height,
    pub round: Round,
    pub value_id: u64,
    pub signatures: Vec<(Address, u64)>,
}

impl From<&CommitCertificate<SimContext>> for SimCertificate {
    fn from(certificate: &CommitCertificate<SimContext>) -> Self {
        Self {
            height: certificate.height,
            round: certificate.round,
            value_id: certificate.value_id,
            signatures: certificate.signatures.clone(),
        }
    }
}

impl From<&SimCertificate> for CommitCertificate<SimContext> {
    fn from(certificate: &SimCertificate) -> Self {
        Self {
            height: certificate.height,
            round: certificate.round,
            value_id: certificate.value_id,
            signatures: certificate.signatures.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimContext;

/// The keyed hash standing in for a signature by `address`.
pub fn sim_sign(address: Address, message: &[u8]) -> u64 {
    mix(fnv1a(message) ^ mix(0x5157_0000 + address as u64))
}

impl Context for SimContext {
    type Address = Address;
    type Value = SimBlock;
    type ValueId = u64;
    type Signature = u64;

    fn value_id(value: &SimBlock) -> u64 {
        fnv1a(&codec::encode(value))
    }

    fn verify(address: &Address, message: &[u8], signature: &u64) -> bool {
        sim_sign(*address, message) == *signature
    }
}

/// What a block builds on: the previous block (none at height 1).
pub struct Parent<'a> {
    pub block: Option<&'a SimBlock>,
}

/// The application's `valid(v)` for a simulated block at `height`, as a
/// host checks it against its own chain: the header, the time after the
/// parent's, and the certificate of the parent (for the parent's hash,
/// signed by a quorum). The clock is judged apart (`is_timely`).
pub fn block_is_valid(
    block: &SimBlock,
    height: Height,
    parent: Parent<'_>,
    validators: &ValidatorSet<SimContext>,
) -> bool {
    if block.height != height || !validators.contains(&block.proposer) {
        return false;
    }
    let Some(parent) = parent.block else {
        return height == 1 && block.last_commit.is_none();
    };
    if parent.height + 1 != height || block.time_ms <= parent.time_ms {
        return false;
    }
    let Some(certificate) = &block.last_commit else {
        return false;
    };
    let certificate = CommitCertificate::<SimContext>::from(certificate);
    certificate.value_id == SimContext::value_id(parent)
        && certificate
            .verify(SIM_CHAIN_ID, parent.height, validators)
            .is_ok()
}

/// The simulator's chain id (in every signature).
pub const SIM_CHAIN_ID: &str = "sim";

/// The block's time is within `max_drift_ms` of the local clock.
pub fn is_timely(block: &SimBlock, local_clock_ms: u64, max_drift_ms: u64) -> bool {
    block.time_ms.abs_diff(local_clock_ms) <= max_drift_ms
}
