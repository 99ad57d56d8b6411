//! A small park for node tests: two firms (admins of seeds 1 and 2), one
//! validator (seed 10), one resource kind.
#![allow(dead_code)]

use symbiont_contracts::exec::genesis_state;
use symbiont_contracts::genesis::Genesis;
use symbiont_contracts::keys::Keypair;
use symbiont_contracts::state::State;

pub mod testnet;

pub const CHAIN: &str = "mempool-test";
pub const GENESIS_TIME_MS: u64 = 1_800_000_000_000;

pub fn key(i: u8) -> Keypair {
    Keypair::from_seed([i; 32])
}

/// Two firms (admins of seeds 1 and 2), one validator (seed 10).
pub fn state() -> State {
    let text = format!(
        r#"
chain_id = "{CHAIN}"
genesis_time_ms = {GENESIS_TIME_MS}
[currency]
code = "EUR"
minor_units = 2
[consensus]
timeout_propose_ms = 1000
timeout_prevote_ms = 500
timeout_precommit_ms = 500
timeout_delta_ms = 250
max_block_txs = 100
max_block_bytes = 1000000
max_clock_drift_ms = 1000
[[firms]]
id = "alpha"
name = "Alpha"
admin_key = "{}"
[[firms]]
id = "beta"
name = "Beta"
admin_key = "{}"
[[nodes]]
id = "n1"
firm = "alpha"
site = "Site"
key = "{}"
validator = true
power = 1
[[resource_kinds]]
id = "steam"
name = "Steam"
unit = "t"
emission_factor_g = 1000
"#,
        key(1).public(),
        key(2).public(),
        key(10).public()
    );
    genesis_state(&Genesis::from_toml(&text).expect("test genesis"))
}

/// Firms a-d (admins of seeds 1-4), each with a validator node (seeds
/// 11-14) of power 1, one resource kind, on chain `chain_id` starting at
/// `genesis_time_ms`, with these timeouts (ms).
pub fn four_validators(
    chain_id: &str,
    genesis_time_ms: u64,
    propose_ms: u64,
    vote_ms: u64,
    delta_ms: u64,
) -> Genesis {
    let mut text = format!(
        r#"
chain_id = "{chain_id}"
genesis_time_ms = {genesis_time_ms}
[currency]
code = "EUR"
minor_units = 2
[consensus]
timeout_propose_ms = {propose_ms}
timeout_prevote_ms = {vote_ms}
timeout_precommit_ms = {vote_ms}
timeout_delta_ms = {delta_ms}
max_block_txs = 100
max_block_bytes = 1000000
max_clock_drift_ms = 1000
[[resource_kinds]]
id = "steam"
name = "Steam"
unit = "t"
emission_factor_g = 1000
"#
    );
    for (i, firm) in ["a", "b", "c", "d"].iter().enumerate() {
        let i = i as u8 + 1;
        text += &format!(
            "[[firms]]\nid = \"{firm}\"\nname = \"Firm {firm}\"\nadmin_key = \"{}\"\n\
             [[nodes]]\nid = \"n{firm}\"\nfirm = \"{firm}\"\nsite = \"Site\"\nkey = \"{}\"\n\
             validator = true\npower = 1\n",
            key(i).public(),
            key(10 + i).public()
        );
    }
    Genesis::from_toml(&text).expect("test genesis")
}

/// Firm a's admin (seed 1) authorizes the operator key of seed
/// `operator_seed`, with nonce `nonce`, on `chain_id`.
pub fn authorize_operator(
    chain_id: &str,
    nonce: u64,
    operator_seed: u8,
) -> symbiont_contracts::tx::SignedTx {
    use symbiont_contracts::tx::{KeyRole, SignedTx, TxBody, TxKind};
    SignedTx::sign(
        TxBody {
            chain_id: chain_id.into(),
            nonce,
            kind: TxKind::AuthorizeKey {
                firm: "a".into(),
                key: key(operator_seed).public(),
                role: KeyRole::Operator,
            },
        },
        &key(1),
    )
}
