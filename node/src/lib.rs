//! The Symbiont node. Its parts arrive with their issues: consensus (sans-I/O core), p2p, storage, rpc.

pub mod audit;
pub mod block;
pub mod chain;
#[cfg(feature = "network")]
pub mod config;
pub mod consensus;
pub mod events;
pub mod export;
pub mod keyfile;
pub mod mempool;
#[cfg(feature = "network")]
pub mod metrics;
#[cfg(feature = "network")]
pub mod p2p;
pub mod ports;
pub mod replica;
#[cfg(feature = "network")]
pub mod rpc;
#[cfg(feature = "network")]
pub mod service;
pub mod sim;
#[cfg(feature = "network")]
pub mod storage;
pub mod verify;
