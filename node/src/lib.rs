//! The Symbiont node. Its parts arrive with their issues: consensus (sans-I/O core), p2p, storage, rpc.

pub mod consensus;
pub mod p2p;
pub mod sim;
