//! The production instantiation: validators are ed25519 public keys, values
//! are block hashes (the block itself travels beside the proposal), and
//! signatures are ed25519 over the sign bytes of `signed`.

use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::{Keypair, PublicKey, Signature};

use super::signer::Signer;
use super::types::Context;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ed25519Context;

impl Context for Ed25519Context {
    type Address = PublicKey;
    type Value = Hash;
    type ValueId = Hash;
    type Signature = Signature;

    fn value_id(value: &Hash) -> Hash {
        *value
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
