//! The production instantiation: validators are ed25519 public keys, the
//! value is the block and its id the block hash (votes and certificates
//! carry the hash; a proposal carries the block, so the WAL that records
//! the proposal holds the block too, and a validator that restarts locked
//! on a block can propose it again), and signatures are ed25519 over the
//! sign bytes of `signed`.

use symbiont_contracts::hash::Hash;

use crate::block::Block;
use symbiont_contracts::keys::{Keypair, PublicKey, Signature};

use super::signer::Signer;
use super::types::Context;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ed25519Context;

impl Context for Ed25519Context {
    type Address = PublicKey;
    type Value = Block;
    type ValueId = Hash;
    type Signature = Signature;

    fn value_id(value: &Block) -> Hash {
        value.hash()
    }

    fn verify(address: &PublicKey, message: &[u8], signature: &Signature) -> bool {
        address.verify(message, signature).is_ok()
    }
}

/// Signs with a validator's keypair (only through a `SignGuard`).
pub struct KeypairSigner(pub Keypair);

impl Signer<Ed25519Context> for KeypairSigner {
    fn address(&self) -> PublicKey {
        self.0.public()
    }

    fn sign(&self, message: &[u8]) -> Signature {
        self.0.sign(message)
    }
}
