//! `symbiont status` and `symbiont tx show`: where a node stands, and what
//! became of a transaction.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use symbiont_proto::v1::{GetTxRequest, StatusRequest, TxState};

use crate::client::{self, Global, connect, refused};
use crate::output::outln;
use crate::units::format_time_ms;

/// The key text people see: "ed25519:<hex>" (or the hex of odd lengths).
pub fn key_text(bytes: &[u8]) -> String {
    match <[u8; 32]>::try_from(bytes) {
        Ok(key) => format!("ed25519:{}", hex::encode(key)),
        Err(_) => hex::encode(bytes),
    }
}

pub fn status(global: &Global) -> Result<()> {
    let status = client::runtime()?.block_on(async {
        let mut client = connect(&global.node).await?;
        let answer = client
            .node
            .status(StatusRequest {})
            .await
            .map_err(refused)?;
        anyhow::Ok(answer.into_inner())
    })?;
    let validators: Vec<_> = status
        .validators
        .iter()
        .map(|v| {
            json!({
                "key": key_text(&v.key),
                "power": v.power,
                "prevoted": v.prevoted,
                "precommitted": v.precommitted,
                "highest_round": v.highest_round,
            })
        })
        .collect();
    if global.json {
        let value = json!({
            "node": global.node,
            "chain_id": status.chain_id,
            "genesis_hash": hex::encode(&status.genesis_hash),
            "node_key": key_text(&status.node_key),
            "is_validator": status.is_validator,
            "height": status.height,
            "block_hash": hex::encode(&status.block_hash),
            "app_hash": hex::encode(&status.app_hash),
            "last_block_time_ms": status.last_block_time_ms,
            "ms_since_last_commit": status.ms_since_last_commit,
            "consensus": {
                "height": status.consensus_height,
                "round": status.round,
                "step": status.step,
            },
            "peers": status.peers,
            "mempool": { "txs": status.mempool_txs, "bytes": status.mempool_bytes },
            "validators": validators,
            "stall_reason": status.stall_reason,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    let role = if status.is_validator {
        "validator"
    } else {
        "full node"
    };
    outln!("node        {} ({role})", global.node)?;
    outln!("chain       {}", status.chain_id)?;
    outln!(
        "height      {} (block time {}, stored {} ms ago)",
        status.height,
        format_time_ms(status.last_block_time_ms),
        status.ms_since_last_commit
    )?;
    outln!(
        "consensus   height {} round {} step {}",
        status.consensus_height,
        status.round,
        status.step
    )?;
    outln!("peers       {}", status.peers)?;
    outln!(
        "mempool     {} txs, {} bytes",
        status.mempool_txs,
        status.mempool_bytes
    )?;
    if !status.stall_reason.is_empty() {
        outln!("stalled     {}", status.stall_reason)?;
    }
    outln!()?;
    outln!(
        "{:<72}  {:>5}  {:<8}  {:<12}  HIGHEST ROUND",
        "VALIDATOR",
        "POWER",
        "PREVOTE",
        "PRECOMMIT"
    )?;
    let yes_no = |b: bool| if b { "yes" } else { "-" };
    for v in &status.validators {
        outln!(
            "{:<72}  {:>5}  {:<8}  {:<12}  {}",
            key_text(&v.key),
            v.power,
            yes_no(v.prevoted),
            yes_no(v.precommitted),
            v.highest_round.map_or("-".to_string(), |r| r.to_string())
        )?;
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum TxCommand {
    /// Show what became of a transaction: unknown, pending or committed
    /// (with its height, index and result).
    ///
    /// Example: symbiont tx show 3f1c…(64 hex digits) --json
    Show {
        /// The transaction id, 64 hex digits (printed by the command that
        /// submitted it).
        id: String,
    },
}

pub fn tx(command: TxCommand, global: &Global) -> Result<()> {
    let TxCommand::Show { id } = command;
    let tx_id = client::parse_id(&id)?;
    let answer = client::runtime()?.block_on(async {
        let mut client = connect(&global.node).await?;
        let request = GetTxRequest {
            tx_id: tx_id.to_vec(),
        };
        let answer = client.node.get_tx(request).await.map_err(refused)?;
        anyhow::Ok(answer.into_inner())
    })?;
    let state = client::tx_state_name(answer.state());
    let committed = answer.state() == TxState::Committed;
    if global.json {
        let mut value = json!({ "tx_id": id, "state": state });
        if committed {
            value["height"] = json!(answer.height);
            value["index"] = json!(answer.index);
            value["result"] = json!(if answer.error.is_empty() {
                "applied"
            } else {
                "failed"
            });
            if !answer.error.is_empty() {
                value["code"] = json!(answer.error);
                value["advice"] = json!(client::advice(&answer.error));
            }
        }
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    outln!("transaction {id}")?;
    match answer.state() {
        TxState::Committed if answer.error.is_empty() => outln!(
            "committed   applied at height {}, index {}",
            answer.height,
            answer.index
        )?,
        TxState::Committed => {
            outln!(
                "committed   failed at height {}, index {}: {}",
                answer.height,
                answer.index,
                answer.error
            )?;
            outln!("            {}", client::advice(&answer.error))?;
        }
        TxState::Pending => outln!("pending     waiting in this node's mempool")?,
        _ => outln!("unknown     neither waiting at this node nor committed")?,
    }
    Ok(())
}
