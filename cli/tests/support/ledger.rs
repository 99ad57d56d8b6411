//! Ledgers built in-process, for the audit's tests and its benchmark: four
//! firms (admins of seeds 1-4) each with a validator (seeds 11-14, power
//! 1), blocks of signed transactions proposed and executed by the node's
//! own `Chain`, each certified by validators 11, 12 and 13 (exactly a
//! quorum: one signature less is not enough). No network, no storage.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use symbiont_contracts::codec;
use symbiont_contracts::genesis::Genesis;
use symbiont_contracts::keys::Keypair;
use symbiont_contracts::kinds::{GovAction, ListingTerms};
use symbiont_contracts::tx::{KeyRole, SignedTx, TxBody, TxKind};
use symbiont_node::block::{Block, Certificate};
use symbiont_node::chain::Chain;
use symbiont_node::consensus::ed25519::Ed25519Context;
use symbiont_node::consensus::proposer::WeightedRoundRobin;
use symbiont_node::consensus::signed::vote_sign_bytes;
use symbiont_node::consensus::{Vote, VoteType};
use symbiont_node::export::{BlockFrame, EndFrame, ExportWriter};

pub const CHAIN: &str = "audit-test";
pub const GENESIS_TIME_MS: u64 = 1_800_000_000_000;
pub const FIRMS: [&str; 4] = ["a", "b", "c", "d"];

pub fn key(i: u8) -> Keypair {
    Keypair::from_seed([i; 32])
}

pub fn genesis(max_block_txs: u32) -> Genesis {
    let mut text = format!(
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
max_block_txs = {max_block_txs}
max_block_bytes = 8000000
max_clock_drift_ms = 1000
[[resource_kinds]]
id = "steam"
name = "Steam"
unit = "t"
emission_factor_g = 1000
"#
    );
    for (i, firm) in FIRMS.iter().enumerate() {
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

/// Validators 11, 12 and 13 precommit `block` in round 0.
pub fn certificate(block: &Block) -> Certificate {
    certificate_by(block, &[11, 12, 13])
}

/// The validators of these seeds precommit `block` in round 0.
pub fn certificate_by(block: &Block, seeds: &[u8]) -> Certificate {
    let mut signers: Vec<Keypair> = seeds.iter().map(|&seed| key(seed)).collect();
    signers.sort_by_key(|k| k.public());
    let signatures = signers
        .iter()
        .map(|k| {
            let vote: Vote<Ed25519Context> = Vote {
                height: block.header.height,
                round: 0,
                vote_type: VoteType::Precommit,
                value: Some(block.hash()),
                validator: k.public(),
            };
            (k.public(), k.sign(&vote_sign_bytes(CHAIN, &vote)))
        })
        .collect();
    Certificate {
        height: block.header.height,
        round: 0,
        value_id: block.hash(),
        signatures,
    }
}

/// A built ledger: its genesis, frames and end.
pub struct Ledger {
    pub genesis: Genesis,
    pub frames: Vec<BlockFrame>,
    pub end: EndFrame,
}

impl Ledger {
    /// The export file's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        write(&self.genesis, &self.frames, self.end)
    }
}

pub fn write(genesis: &Genesis, frames: &[BlockFrame], end: EndFrame) -> Vec<u8> {
    let mut writer = ExportWriter::new(Vec::new(), &codec::encode(genesis)).unwrap();
    for frame in frames {
        writer.block(frame).unwrap();
    }
    writer.finish(end).unwrap()
}

/// `blocks` blocks of `txs_per_block` transactions: each firm's admin in
/// turn posts an offer or a request of steam, or (one in eight)
/// authorizes a fresh operator key. With `one_failure`, block 2 also
/// carries a transaction that repeats a nonce (it fails with
/// `bad_nonce`).
pub fn build(blocks: u64, txs_per_block: usize, one_failure: bool) -> Ledger {
    build_with(blocks, txs_per_block, one_failure, None, None, |_| {
        vec![11, 12, 13]
    })
}

/// Validator seeds of the set after `build_governed`'s change: 14 holds
/// 10 of the 13 votes.
pub const AFTER_CHANGE: [u8; 4] = [11, 12, 13, 14];

/// A ledger whose validator set changes: block 2 carries firm a's
/// proposal to raise node "nd" (validator 14) to power 10, block 3 the
/// votes of firms b and c that pass it, so from height 4 on the set is
/// 11, 12, 13 (power 1 each) and 14 (power 10). `signers(height)`: the
/// validator seeds whose precommits certify each height.
pub fn build_governed(blocks: u64, signers: impl Fn(u64) -> Vec<u8>) -> Ledger {
    build_with(blocks, 2, false, Some(10), None, signers)
}

/// Equivocation evidence in a block: validator `seed`'s two precommits
/// for different values at `vote_height`, carried by block `in_block`.
pub struct EvidenceAt {
    pub in_block: u64,
    pub seed: u8,
    pub vote_height: u64,
}

/// As `build_governed`, but governance sets node "nd"'s power to `power`
/// (0 takes validator 14 out of the set from height 4 on), and `evidence`
/// goes into its block. Certified by 11, 12 and 13 throughout.
pub fn build_governed_with(blocks: u64, power: u64, evidence: EvidenceAt) -> Ledger {
    build_with(blocks, 2, false, Some(power), Some(evidence), |_| {
        vec![11, 12, 13]
    })
}

/// Two precommits of validator `seed` at `height`, round 0, for different
/// values, in canonical order.
pub fn equivocation(seed: u8, height: u64) -> symbiont_node::block::Evidence {
    let signed = |value: u8| {
        let vote: Vote<Ed25519Context> = Vote {
            height,
            round: 0,
            vote_type: VoteType::Precommit,
            value: Some(symbiont_contracts::hash::Hash([value; 32])),
            validator: key(seed).public(),
        };
        let signature = key(seed).sign(&vote_sign_bytes(CHAIN, &vote));
        symbiont_node::consensus::signed::SignedVote { vote, signature }
    };
    let (mut first, mut second) = (signed(1), signed(2));
    if codec::encode(&first) > codec::encode(&second) {
        std::mem::swap(&mut first, &mut second);
    }
    symbiont_node::block::Evidence { first, second }
}

fn build_with(
    blocks: u64,
    txs_per_block: usize,
    one_failure: bool,
    governance: Option<u64>,
    evidence: Option<EvidenceAt>,
    signers: impl Fn(u64) -> Vec<u8>,
) -> Ledger {
    let genesis = genesis(txs_per_block as u32 + if governance.is_some() { 3 } else { 1 });
    let mut proposal = None;
    let mut chain = Chain::from_genesis(&genesis, Arc::new(WeightedRoundRobin)).unwrap();
    let admins: Vec<Keypair> = (1..=4).map(key).collect();
    let mut nonces = [0u64; 4];
    let mut fresh: u64 = 0;
    let mut frames = Vec::new();
    let mut last_commit: Option<Certificate> = None;
    for height in 1..=blocks {
        let mut txs = Vec::with_capacity(txs_per_block + 1);
        for j in 0..txs_per_block {
            let firm = (j + height as usize) % 4;
            nonces[firm] += 1;
            fresh += 1;
            // A park's mix: mostly market traffic, some key churn.
            let kind = if j % 8 == 0 {
                let mut seed = [0xA5u8; 32];
                seed[..8].copy_from_slice(&fresh.to_le_bytes());
                TxKind::AuthorizeKey {
                    firm: FIRMS[firm].into(),
                    key: Keypair::from_seed(seed).public(),
                    role: KeyRole::Operator,
                }
            } else {
                let listing = ListingTerms {
                    kind: "steam".into(),
                    quantity_per_period: 1_000 + fresh,
                    price: 2_500,
                    delivery_point: "gate 1".into(),
                    quality: BTreeMap::new(),
                    period_ms: 3_600_000,
                    periods: 24,
                    valid_until_ms: GENESIS_TIME_MS + 86_400_000_000,
                };
                if j % 2 == 0 {
                    TxKind::PostOffer { listing }
                } else {
                    TxKind::PostRequest { listing }
                }
            };
            txs.push(SignedTx::sign(
                TxBody {
                    chain_id: CHAIN.into(),
                    nonce: nonces[firm],
                    kind,
                },
                &admins[firm],
            ));
        }
        if one_failure && height == 2 {
            // Firm a's admin signs a nonce it has used already.
            fresh += 1;
            let mut seed = [0x5Au8; 32];
            seed[..8].copy_from_slice(&fresh.to_le_bytes());
            txs.push(SignedTx::sign(
                TxBody {
                    chain_id: CHAIN.into(),
                    nonce: 1,
                    kind: TxKind::AuthorizeKey {
                        firm: "a".into(),
                        key: Keypair::from_seed(seed).public(),
                        role: KeyRole::Meter,
                    },
                },
                &admins[0],
            ));
        }
        if let (Some(power), 2) = (governance, height) {
            nonces[0] += 1;
            let tx = SignedTx::sign(
                TxBody {
                    chain_id: CHAIN.into(),
                    nonce: nonces[0],
                    kind: TxKind::Propose {
                        action: GovAction::SetPower {
                            node: "nd".into(),
                            power,
                        },
                        expires_ms: GENESIS_TIME_MS + 1_000_000_000,
                    },
                },
                &admins[0],
            );
            proposal = Some(tx.id());
            txs.push(tx);
        }
        if governance.is_some() && height == 3 {
            for firm in [1, 2] {
                nonces[firm] += 1;
                txs.push(SignedTx::sign(
                    TxBody {
                        chain_id: CHAIN.into(),
                        nonce: nonces[firm],
                        kind: TxKind::Vote {
                            proposal: proposal.expect("proposed at height 2"),
                            approve: true,
                        },
                    },
                    &admins[firm],
                ));
            }
        }
        let checks: Vec<_> = txs.iter().map(|t| t.verify(CHAIN)).collect();
        let proposer = key(11 + (height % 4) as u8).public();
        let (block, executed) = chain
            .propose(
                proposer,
                GENESIS_TIME_MS + height * 1000,
                txs,
                &checks,
                evidence
                    .iter()
                    .filter(|e| e.in_block == height)
                    .map(|e| equivocation(e.seed, e.vote_height))
                    .collect(),
                last_commit.take(),
            )
            .unwrap();
        let results = executed
            .outcome
            .results
            .iter()
            .map(|(_, r)| {
                r.as_ref()
                    .err()
                    .map(|e| e.code().to_string())
                    .unwrap_or_default()
            })
            .collect();
        let certificate = certificate_by(&block, &signers(height));
        frames.push(BlockFrame {
            height,
            block: block.encode(),
            certificate: codec::encode(&certificate),
            results,
        });
        chain.commit(&block, executed).unwrap();
        last_commit = Some(certificate);
    }
    let end = EndFrame {
        height: chain.tip().height,
        block_hash: chain.tip().hash,
    };
    Ledger {
        genesis,
        frames,
        end,
    }
}
