//! Symbiont's deterministic application.
//!
//! Pure and deterministic: no I/O, clocks, randomness, floats or hash-map
//! iteration in anything that feeds a hash or a signature. The node and the
//! auditor (`symbiont audit`) run this very code, so they reach the same
//! state and the same app hash from the same transactions.

pub mod codec;
pub mod exec;
pub mod genesis;
pub mod hash;
pub mod keys;
pub mod kinds;
pub mod numbers;
pub mod pool;
pub mod settlement;
pub mod state;
pub mod tx;

pub use codec::{CodecError, decode, encode};
pub use genesis::Genesis;
pub use hash::Hash;
pub use keys::{Keypair, PublicKey, Signature};
pub use tx::{SignedTx, TxBody, TxError, TxKind};
