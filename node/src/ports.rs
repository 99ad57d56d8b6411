//! Where a local network's nodes listen, relative to their p2p ports: the
//! layout `symbiont-node testnet` writes and the CLI's local parks (demo,
//! bench) expect. Outside the `network` feature, so the CLI can read it.

/// How far above a testnet node's p2p port its gRPC port is.
pub const GRPC_PORT_OFFSET: u16 = 100;
/// How far above a testnet node's p2p port its metrics port is (the
/// larger offset: checking it checks both).
pub const METRICS_PORT_OFFSET: u16 = 1000;
