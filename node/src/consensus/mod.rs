//! Consensus: a sans-I/O Tendermint core, its signed layer, crash-safe
//! signing state and WAL. See `docs/consensus.md`.

pub mod core;
pub mod keeper;
pub mod proposer;
pub mod types;

pub use self::core::{Core, Input, Output, Params, Validity};
pub use self::proposer::{
    MISSED_TURN_WINDOW, ProposerHistory, ProposerSelector, WeightedRoundRobin, excluded_proposers,
    missed_turns,
};
pub use self::types::*;
#[cfg(test)]
mod core_tests;
pub mod ed25519;
pub mod engine;
pub mod signed;
pub mod signer;
pub mod wal;
