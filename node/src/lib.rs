//! The Symbiont node. Its parts arrive with their issues: consensus (sans-I/O core), p2p, storage, rpc.

pub mod block;
pub mod chain;
pub mod config;
pub mod consensus;
pub mod events;
pub mod keyfile;
pub mod mempool;
pub mod metrics;
pub mod p2p;
pub mod replica;
pub mod rpc;
pub mod service;
pub mod sim;
pub mod storage;
pub mod verify;
