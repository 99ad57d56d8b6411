//! Blocks: the header's bytes as docs/ledger-format.md (section 7) describes
//! them, rebuilt here by hand; the block hash pinned; every header check of
//! `valid(v)` with its typed error; the clock rule giving `Untimely`.

use symbiont_contracts::codec;
use symbiont_contracts::genesis::ConsensusParams;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::Keypair;
use symbiont_contracts::tx::{SignedTx, TxBody, TxKind};
use symbiont_node::block::{
    Block, BlockDraft, BlockError, Certificate, Parent, check, core_params, last_commit_hash,
    tx_root,
};
use symbiont_node::consensus::core::Validity;
use symbiont_node::consensus::ed25519::Ed25519Context;
use symbiont_node::consensus::signed::{CertificateError, vote_sign_bytes};
use symbiont_node::consensus::{ValidatorSet, Vote, VoteType};

const CHAIN: &str = "symbiont-test";
const PARENT: Hash = Hash([0x11; 32]);
const PARENT_TIME_MS: u64 = 1_800_000_000_000;

fn key(i: u8) -> Keypair {
    Keypair::from_seed([i; 32])
}

fn validators() -> ValidatorSet<Ed25519Context> {
    ValidatorSet::new((1..=4).map(|i| (key(i).public(), 1))).unwrap()
}

fn params() -> ConsensusParams {
    ConsensusParams {
        timeout_propose_ms: 1000,
        timeout_prevote_ms: 500,
        timeout_precommit_ms: 500,
        timeout_delta_ms: 250,
        max_block_txs: 2,
        max_block_bytes: 4096,
        max_clock_drift_ms: 500,
    }
}

/// Validators 1, 2 and 3 of 4 precommit `value` at height 1, round 0.
fn certificate(value: Hash) -> Certificate {
    let mut signers: Vec<Keypair> = (1..=3).map(key).collect();
    signers.sort_by_key(|k| k.public());
    let signatures = signers
        .iter()
        .map(|k| {
            let vote: Vote<Ed25519Context> = Vote {
                height: 1,
                round: 0,
                vote_type: VoteType::Precommit,
                value: Some(value),
                validator: k.public(),
            };
            (k.public(), k.sign(&vote_sign_bytes(CHAIN, &vote)))
        })
        .collect();
    Certificate {
        height: 1,
        round: 0,
        value_id: value,
        signatures,
    }
}

fn tx() -> SignedTx {
    SignedTx::sign(
        TxBody {
            chain_id: CHAIN.into(),
            nonce: 1,
            kind: TxKind::Withdraw {
                listing: Hash([3; 32]),
            },
        },
        &key(9),
    )
}

/// The block of height 2 the vectors pin.
fn block() -> Block {
    BlockDraft {
        chain_id: CHAIN.into(),
        height: 2,
        time_ms: PARENT_TIME_MS + 1000,
        previous_hash: PARENT,
        proposer: key(2).public(),
        txs: vec![tx()],
        evidence: vec![],
        last_commit: Some(certificate(PARENT)),
    }
    .seal(Hash([0x22; 32]))
}

fn parent<'a>(
    validators: &'a ValidatorSet<Ed25519Context>,
    params: &'a ConsensusParams,
) -> Parent<'a> {
    Parent {
        chain_id: CHAIN,
        height: 1,
        hash: PARENT,
        time_ms: PARENT_TIME_MS,
        validators: Some(validators),
        params,
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The header's bytes built from the documented layout, not from the codec.
#[test]
fn header_bytes_follow_the_documented_layout() {
    let block = block();
    let header = &block.header;
    let mut expected = Vec::new();
    string(&mut expected, CHAIN);
    expected.extend_from_slice(&2u64.to_le_bytes());
    expected.extend_from_slice(&(PARENT_TIME_MS + 1000).to_le_bytes());
    expected.extend_from_slice(&PARENT.0);
    // tx_root: H(u64 count, then each 32-byte id).
    let mut ids = 1u64.to_le_bytes().to_vec();
    ids.extend_from_slice(&tx().id().0);
    expected.extend_from_slice(blake3::hash(&ids).as_bytes());
    // evidence_root: H(empty list) = H(u64 0).
    expected.extend_from_slice(blake3::hash(&0u64.to_le_bytes()).as_bytes());
    // last_commit_hash: H(01, certificate).
    let mut last_commit = vec![1u8];
    last_commit.extend_from_slice(&codec::encode(&certificate(PARENT)));
    expected.extend_from_slice(blake3::hash(&last_commit).as_bytes());
    expected.extend_from_slice(&[0x22; 32]);
    expected.extend_from_slice(&key(2).public().0);
    assert_eq!(codec::encode(header), expected);
    assert_eq!(header.hash().0, *blake3::hash(&expected).as_bytes());
    assert_eq!(header.tx_root, tx_root(&block.txs));
    assert_eq!(
        header.last_commit_hash,
        last_commit_hash(&block.last_commit)
    );
    // The certificate's own bytes: height, round, value id, then the
    // (key, signature) pairs sorted by key.
    let cert = certificate(PARENT);
    let mut cert_bytes = Vec::new();
    cert_bytes.extend_from_slice(&1u64.to_le_bytes());
    cert_bytes.extend_from_slice(&0u32.to_le_bytes());
    cert_bytes.extend_from_slice(&PARENT.0);
    cert_bytes.extend_from_slice(&3u64.to_le_bytes());
    for (public, signature) in &cert.signatures {
        cert_bytes.extend_from_slice(&public.0);
        cert_bytes.extend_from_slice(&signature.0);
    }
    assert_eq!(codec::encode(&cert), cert_bytes);
    // The block: header, txs, evidence, Option<certificate>.
    let mut block_bytes = codec::encode(header);
    block_bytes.extend_from_slice(&1u64.to_le_bytes());
    block_bytes.extend_from_slice(&tx().to_bytes());
    block_bytes.extend_from_slice(&0u64.to_le_bytes());
    block_bytes.push(1);
    block_bytes.extend_from_slice(&cert_bytes);
    assert_eq!(block.encode(), block_bytes);
}

/// Pinned so the format cannot drift silently (deterministic keys from
/// fixed seeds, RFC 8032 signatures).
#[test]
fn block_hash_is_pinned() {
    assert_eq!(block().hash().to_hex(), GOLDEN_BLOCK_HASH);
    assert_eq!(
        hex::encode(codec::encode(&block().header)).len(),
        2 * (8 + CHAIN.len() + 8 + 8 + 32 * 6)
    );
}

const GOLDEN_BLOCK_HASH: &str = "877c4c6dda4202336a2d3ee9a9367f6b1e8afce16cfdc72bb4e287fcf33f3f53";

#[test]
fn a_well_formed_block_is_valid_and_timely_within_the_drift() {
    let (validators, params) = (validators(), params());
    let block = block();
    let at = block.header.time_ms;
    let parent = parent(&validators, &params);
    assert_eq!(check(&block, &parent, at), Ok(Validity::Valid));
    assert_eq!(check(&block, &parent, at + 500), Ok(Validity::Valid));
    assert_eq!(check(&block, &parent, at - 500), Ok(Validity::Valid));
    assert_eq!(check(&block, &parent, at + 501), Ok(Validity::Untimely));
    assert_eq!(check(&block, &parent, at - 501), Ok(Validity::Untimely));
}

#[test]
fn every_header_check_names_what_differs() {
    let (validators, params) = (validators(), params());
    let parent = parent(&validators, &params);
    let at = block().header.time_ms;
    let reseal = |edit: &dyn Fn(&mut BlockDraft)| {
        let b = block();
        let mut draft = BlockDraft {
            chain_id: b.header.chain_id,
            height: b.header.height,
            time_ms: b.header.time_ms,
            previous_hash: b.header.previous_hash,
            proposer: b.header.proposer,
            txs: b.txs,
            evidence: b.evidence,
            last_commit: b.last_commit,
        };
        edit(&mut draft);
        draft.seal(b.header.app_hash)
    };
    type Expected = fn(&BlockError) -> bool;
    let cases: Vec<(Block, Expected)> = vec![
        (reseal(&|d| d.chain_id = "other".into()), |e| {
            matches!(e, BlockError::WrongChain { .. })
        }),
        (reseal(&|d| d.height = 3), |e| {
            matches!(
                e,
                BlockError::WrongHeight {
                    expected: 2,
                    found: 3
                }
            )
        }),
        (reseal(&|d| d.previous_hash = Hash([9; 32])), |e| {
            matches!(e, BlockError::WrongParent { .. })
        }),
        (reseal(&|d| d.time_ms = PARENT_TIME_MS), |e| {
            matches!(e, BlockError::TimeNotAfter { .. })
        }),
        (reseal(&|d| d.txs = vec![tx(), tx(), tx()]), |e| {
            matches!(e, BlockError::TooManyTxs { count: 3, max: 2 })
        }),
        (reseal(&|d| d.last_commit = None), |e| {
            matches!(e, BlockError::MissingLastCommit { height: 2 })
        }),
        (
            reseal(&|d| d.last_commit = Some(certificate(Hash([9; 32])))),
            |e| matches!(e, BlockError::LastCommitForAnotherBlock { .. }),
        ),
        (
            reseal(&|d| {
                let mut weak = certificate(PARENT);
                weak.signatures.truncate(2);
                d.last_commit = Some(weak);
            }),
            |e| {
                matches!(
                    e,
                    BlockError::BadLastCommit(CertificateError::NoQuorum { .. })
                )
            },
        ),
    ];
    for (i, (bad, expected)) in cases.into_iter().enumerate() {
        let error = check(&bad, &parent, at).expect_err("refused");
        assert!(expected(&error), "case {i}: {error}");
    }
    // Contents that do not match the header's roots.
    let mut swapped = block();
    swapped.txs.clear();
    assert!(matches!(
        check(&swapped, &parent, at),
        Err(BlockError::RootMismatch {
            what: "tx_root",
            ..
        })
    ));
    let mut dropped = block();
    dropped.last_commit = None;
    assert!(matches!(
        check(&dropped, &parent, at),
        Err(BlockError::RootMismatch {
            what: "last_commit_hash",
            ..
        })
    ));
    // Over the byte limit.
    let small = ConsensusParams {
        max_block_bytes: 100,
        ..params.clone()
    };
    let tight = Parent {
        params: &small,
        ..parent
    };
    assert!(matches!(
        check(&block(), &tight, at),
        Err(BlockError::TooLarge { max: 100, .. })
    ));
}

#[test]
fn the_first_block_carries_no_certificate() {
    let params = params();
    let genesis = Parent {
        chain_id: CHAIN,
        height: 0,
        hash: Hash([0x44; 32]),
        time_ms: PARENT_TIME_MS,
        validators: None,
        params: &params,
    };
    let first = |last_commit| {
        BlockDraft {
            chain_id: CHAIN.into(),
            height: 1,
            time_ms: PARENT_TIME_MS + 1,
            previous_hash: Hash([0x44; 32]),
            proposer: key(1).public(),
            txs: vec![],
            evidence: vec![],
            last_commit,
        }
        .seal(Hash::ZERO)
    };
    let at = PARENT_TIME_MS + 1;
    assert_eq!(check(&first(None), &genesis, at), Ok(Validity::Valid));
    assert_eq!(
        check(&first(Some(certificate(PARENT))), &genesis, at),
        Err(BlockError::UnexpectedLastCommit)
    );
}

#[test]
fn genesis_timeouts_map_onto_the_core() {
    let core = core_params(&params());
    assert_eq!(
        (
            core.timeout_propose_ms,
            core.timeout_prevote_ms,
            core.timeout_precommit_ms
        ),
        (1000, 500, 500)
    );
    assert_eq!(
        (
            core.timeout_propose_delta_ms,
            core.timeout_prevote_delta_ms,
            core.timeout_precommit_delta_ms
        ),
        (250, 250, 250)
    );
    assert_eq!(core.max_timeout_level, 8);
}
