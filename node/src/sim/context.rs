//! The simulator's instantiation of the core: small integer addresses,
//! blocks that record the previous commit's signers, and cheap keyed-hash
//! "signatures" (the simulator's Byzantine code only signs with its own
//! key; real ed25519 would make each seed a hundred times slower).

use serde::{Deserialize, Serialize};
use symbiont_contracts::codec;

use crate::consensus::types::{Context, Height, ValidatorSet};

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

/// A simulated block.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SimBlock {
    pub height: Height,
    pub proposer: Address,
    pub payload: u64,
    /// Signers of the previous height's commit certificate (sorted).
    pub last_commit: Vec<Address>,
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

/// The application's `valid(v)` for simulated blocks.
pub fn block_is_valid(
    block: &SimBlock,
    height: Height,
    validators: &ValidatorSet<SimContext>,
) -> bool {
    if block.height != height || !validators.contains(&block.proposer) {
        return false;
    }
    if height == 1 {
        return block.last_commit.is_empty();
    }
    if block.last_commit.windows(2).any(|w| w[0] >= w[1]) {
        return false;
    }
    let mut power: u64 = 0;
    for signer in &block.last_commit {
        match validators.power_of(signer) {
            Some(p) => power += p,
            None => return false,
        }
    }
    validators.is_quorum(power)
}
