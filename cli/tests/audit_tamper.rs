//! `symbiont audit` on ledgers built in-process (support/ledger.rs): a
//! clean export audits clean, and every kind of tampering fails the audit
//! (exit status 1) naming the place: flipped bytes anywhere in the file,
//! bytes of a block, certificate or results changed with the frame's
//! checksum recomputed (as a forger would), a block dropped, reordered or
//! repeated, a certificate swapped for another block's, a signature
//! removed from a certificate, a transaction's result changed, a file cut
//! short.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use symbiont_contracts::codec;
use symbiont_node::block::{Block, Certificate, last_commit_hash};
use symbiont_node::export::{BlockFrame, EndFrame};

#[path = "support/ledger.rs"]
mod ledger;

const CLI: &str = env!("CARGO_BIN_EXE_symbiont");

fn audit_bytes(dir: &Path, name: &str, bytes: &[u8], json: bool) -> Output {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let mut command = Command::new(CLI);
    if json {
        command.arg("--json");
    }
    command.arg("audit").arg(&path).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The audit failed (status 1, no panic) and its message contains `needle`.
fn assert_fails_naming(output: &Output, needle: &str, case: &str) {
    assert_fails_naming_any(output, &[needle], case);
}

/// The audit failed and its message contains one of `needles`.
fn assert_fails_naming_any(output: &Output, needles: &[&str], case: &str) {
    let text = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{case}: expected failure, got {:?}\nstdout: {}\nstderr: {text}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(!text.contains("panicked"), "{case}: panicked: {text}");
    assert!(
        needles.iter().any(|needle| text.contains(needle)),
        "{case}: the error does not name any of {needles:?}: {text}"
    );
}

fn small() -> ledger::Ledger {
    ledger::build(6, 3, true)
}

fn rewrite(ledger: &ledger::Ledger, frames: &[BlockFrame], end: EndFrame) -> Vec<u8> {
    ledger::write(&ledger.genesis, frames, end)
}

#[test]
fn a_clean_export_audits_clean() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = small();
    let output = audit_bytes(dir.path(), "clean", &ledger.bytes(), false);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("clean"), "{text}");
    assert!(
        text.contains("checked 6 blocks, 19 transactions (18 applied, 1 failed)"),
        "{text}"
    );
    let output = audit_bytes(dir.path(), "clean", &ledger.bytes(), true);
    assert!(output.status.success(), "{}", stderr(&output));
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["ok"], true);
    assert_eq!(value["report"]["height"], 6);
    assert_eq!(value["report"]["counts"]["failed"], 1);
    // 19 transaction signatures and 3 votes per certificate.
    assert_eq!(value["report"]["counts"]["signatures"], 19 + 6 * 3);
    assert_eq!(value["report"]["firms"].as_array().unwrap().len(), 4);
}

/// Byte offsets of each frame: (kind, start, payload start, payload end).
fn frames_of(bytes: &[u8]) -> Vec<(u8, usize, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 12;
    while at < bytes.len() {
        let kind = bytes[at];
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        out.push((kind, at, at + 5, at + 5 + len));
        at += 5 + len + 32;
    }
    assert_eq!(at, bytes.len());
    out
}

#[test]
fn any_flipped_byte_fails_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small().bytes();
    // Every byte of the header and of the first frame header, then
    // positions spread over the whole file.
    let step = bytes.len() / 90;
    let positions: Vec<usize> = (0..20)
        .chain((20..bytes.len()).step_by(step))
        .chain([bytes.len() - 1])
        .collect();
    for position in positions {
        let mut tampered = bytes.clone();
        tampered[position] ^= 0x04;
        let output = audit_bytes(dir.path(), "flipped", &tampered, false);
        let case = format!("byte {position} flipped");
        let needle = if position < 8 {
            "not a Symbiont export file".to_string()
        } else if position < 12 {
            "export format version".to_string()
        } else {
            // A frame header or payload: its checksum fails, or a length
            // changed and the file no longer frames.
            String::from("byte ")
        };
        assert_fails_naming(&output, &needle, &case);
    }
}

/// Changes one byte of a frame's payload and recomputes its checksum.
fn forge(bytes: &[u8], payload_at: usize, frame: (u8, usize, usize, usize)) -> Vec<u8> {
    let (kind, _, start, end) = frame;
    let mut payload = bytes[start..end].to_vec();
    payload[payload_at - start] ^= 0x01;
    let mut out = bytes[..start].to_vec();
    out.extend_from_slice(&payload);
    out.extend_from_slice(&symbiont_node::export::frame_checksum(kind, &payload).0);
    out.extend_from_slice(&bytes[end + 32..]);
    out
}

#[test]
fn a_forged_frame_with_a_good_checksum_fails_at_its_height() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small().bytes();
    let frames = frames_of(&bytes);
    assert_eq!(frames.len(), 1 + 6 + 1);
    for (index, frame) in frames.iter().enumerate() {
        let (kind, frame_start, start, end) = *frame;
        // Sample positions over the payload (every byte of short ones).
        let step = ((end - start) / 25).max(1);
        for position in (start..end).step_by(step) {
            let tampered = forge(&bytes, position, *frame);
            let output = audit_bytes(dir.path(), "forged", &tampered, false);
            let case = format!("frame {index} (kind {kind}) byte {position} forged");
            let at_height = format!("height {index}: ");
            let at_frame = format!("frame at byte {frame_start} is malformed");
            let needles: Vec<&str> = match kind {
                // The genesis changes its hash: block 1 no longer builds
                // on it, or the genesis no longer decodes or validates.
                1 => vec!["height 1: ", "genesis frame"],
                // A block frame: named at its height (a changed height
                // field: the expected height), or, when a length field
                // changed, the frame no longer parses and is named by
                // its offset.
                2 => vec![&at_height, &at_frame],
                _ => vec!["end frame"],
            };
            assert_fails_naming_any(&output, &needles, &case);
        }
    }
}

#[test]
fn dropped_reordered_and_repeated_blocks_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = small();
    let f = &ledger.frames;
    let end = ledger.end;

    let mut dropped = f.clone();
    dropped.remove(2);
    let output = audit_bytes(dir.path(), "x", &rewrite(&ledger, &dropped, end), false);
    assert_fails_naming(
        &output,
        "height 3: block frame for height 4, expected height 3",
        "dropped",
    );

    let mut reordered = f.clone();
    reordered.swap(2, 3);
    let output = audit_bytes(dir.path(), "x", &rewrite(&ledger, &reordered, end), false);
    assert_fails_naming(
        &output,
        "height 3: block frame for height 4, expected height 3",
        "reordered",
    );

    let mut repeated = f.clone();
    repeated.insert(3, f[2].clone());
    let output = audit_bytes(dir.path(), "x", &rewrite(&ledger, &repeated, end), false);
    assert_fails_naming(
        &output,
        "height 4: block frame for height 3, expected height 4",
        "repeated",
    );

    // The last block dropped and the end frame rewritten to match the
    // file would be a shorter ledger, not a forgery; with the old end
    // frame it is named.
    let output = audit_bytes(dir.path(), "x", &rewrite(&ledger, &f[..5], end), false);
    assert_fails_naming(&output, "the end frame names height 6", "last dropped");
}

#[test]
fn certificates_swapped_or_short_of_a_signature_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = small();
    let end = ledger.end;

    let mut swapped = ledger.frames.clone();
    let third = swapped[2].certificate.clone();
    swapped[2].certificate = swapped[3].certificate.clone();
    swapped[3].certificate = third;
    let output = audit_bytes(dir.path(), "x", &rewrite(&ledger, &swapped, end), true);
    assert_fails_naming(
        &output,
        "height 3: certificate: it certifies height 4",
        "swapped",
    );
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["ok"], false);
    assert_eq!(value["height"], 3);

    let mut short = ledger.frames.clone();
    let mut certificate: Certificate = codec::decode(&short[4].certificate).unwrap();
    certificate.signatures.remove(1);
    short[4].certificate = codec::encode(&certificate);
    let output = audit_bytes(dir.path(), "x", &rewrite(&ledger, &short, end), false);
    assert_fails_naming(
        &output,
        "height 5: certificate: signers hold 2 of 4 power, not more than 2/3",
        "signature removed",
    );

    // A signature replaced by another validator's vote on another block.
    let mut bad = ledger.frames.clone();
    let mut certificate: Certificate = codec::decode(&bad[1].certificate).unwrap();
    let other: Certificate = codec::decode(&bad[0].certificate).unwrap();
    certificate.signatures[0].1 = other.signatures[0].1;
    let validator = certificate.signatures[0].0;
    bad[1].certificate = codec::encode(&certificate);
    let output = audit_bytes(dir.path(), "x", &rewrite(&ledger, &bad, end), false);
    assert_fails_naming(
        &output,
        &format!("height 2: certificate: the signature of validator {validator} is bad"),
        "signature replaced",
    );
}

/// The certificate a block carries of its parent is checked too (its
/// signatures are verified in the same batches as the rest): the last
/// block re-sealed with one signature of it replaced, and certified again,
/// fails on that signature, though the parent's own certificate in the
/// file holds the good one.
#[test]
fn a_bad_signature_in_the_parents_certificate_a_block_carries_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = small();
    let mut frames = ledger.frames.clone();
    let last = frames.len() - 1;
    let mut block: Block = codec::decode(&frames[last].block).unwrap();
    let other: Certificate = codec::decode(&frames[1].certificate).unwrap();
    let carried = block.last_commit.as_mut().unwrap();
    assert_eq!(carried.signatures[0].0, other.signatures[0].0);
    carried.signatures[0].1 = other.signatures[0].1;
    block.header.last_commit_hash = last_commit_hash(&block.last_commit);
    frames[last].block = block.encode();
    frames[last].certificate = codec::encode(&ledger::certificate(&block));
    let end = EndFrame {
        height: ledger.end.height,
        block_hash: block.hash(),
    };
    let output = audit_bytes(dir.path(), "x", &rewrite(&ledger, &frames, end), false);
    assert_fails_naming(
        &output,
        "height 6: the previous block's certificate is invalid: bad signature",
        "carried certificate's signature replaced",
    );
}

#[test]
fn a_changed_result_is_named_with_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = small();
    // Block 2's last transaction failed (bad_nonce): claim it applied.
    let mut frames = ledger.frames.clone();
    assert_eq!(frames[1].results[3], "bad_nonce");
    frames[1].results[3] = String::new();
    let output = audit_bytes(
        dir.path(),
        "x",
        &rewrite(&ledger, &frames, ledger.end),
        true,
    );
    assert_fails_naming(&output, "height 2: transaction 3", "failed made applied");
    assert!(
        stderr(&output).contains("replay gives failed (bad_nonce), the export says applied"),
        "{}",
        stderr(&output)
    );
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["height"], 2);
    assert_eq!(value["tx_index"], 3);

    let mut frames = ledger.frames.clone();
    frames[4].results[0] = "unknown_signer".into();
    let output = audit_bytes(
        dir.path(),
        "x",
        &rewrite(&ledger, &frames, ledger.end),
        false,
    );
    assert_fails_naming(&output, "height 5: transaction 0", "applied made failed");

    let mut frames = ledger.frames.clone();
    frames[3].results.pop();
    let output = audit_bytes(
        dir.path(),
        "x",
        &rewrite(&ledger, &frames, ledger.end),
        false,
    );
    assert_fails_naming(
        &output,
        "height 4: the frame holds 2 results for 3 transactions",
        "result dropped",
    );
}

#[test]
fn a_file_cut_short_is_named_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small().bytes();
    let frames = frames_of(&bytes);
    // Inside a frame, and at a frame boundary (before the end frame).
    for (cut, needle) in [
        (frames[3].2 + 10, "cut short"),
        (frames[7].1, "without its end frame"),
        (0, "empty"),
    ] {
        let output = audit_bytes(dir.path(), "cut", &bytes[..cut], false);
        assert_fails_naming(&output, needle, &format!("cut at {cut}"));
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"junk");
    let output = audit_bytes(dir.path(), "long", &longer, false);
    assert_fails_naming(&output, "4 bytes follow the end frame", "trailing bytes");
}

/// The certificate of each height is checked against the validators of
/// that height: after governance raised validator 14 to 10 of 13 votes,
/// certificates need it, and the old set's quorum no longer counts.
#[test]
fn certificates_follow_the_validator_set_governance_gives() {
    let dir = tempfile::tempdir().unwrap();
    let after = |height: u64| {
        if height >= 4 {
            ledger::AFTER_CHANGE.to_vec()
        } else {
            vec![11, 12, 13]
        }
    };
    let governed = ledger::build_governed(6, after);
    let output = audit_bytes(dir.path(), "governed", &governed.bytes(), true);
    assert!(output.status.success(), "{}", stderr(&output));
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    let powers: Vec<u64> = value["report"]["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[1].as_u64().unwrap())
        .collect();
    assert_eq!(powers.iter().sum::<u64>(), 13, "{value}");

    // The same chain certified by the old set's quorum throughout.
    let stale = ledger::build_governed(6, |_| vec![11, 12, 13]);
    let output = audit_bytes(dir.path(), "stale", &stale.bytes(), false);
    assert_fails_naming(
        &output,
        "height 4: certificate: signers hold 3 of 13 power, not more than 2/3",
        "old set after the change",
    );
}

/// Evidence is judged as the nodes judge it: against the validators of the
/// block that carries it. Governance takes validator 14 out of the set at
/// height 4. Its equivocation at height 2, carried by block 3 (14 still a
/// validator), audits clean and is reported; carried by block 5, the nodes
/// refuse it (14 is no validator of height 5), and so must the audit,
/// which used to judge it by the set of height 2 and accept it.
#[test]
fn evidence_is_judged_by_the_validators_of_the_block_that_carries_it() {
    let dir = tempfile::tempdir().unwrap();
    let evidence = |in_block| ledger::EvidenceAt {
        in_block,
        seed: 14,
        vote_height: 2,
    };
    let early = ledger::build_governed_with(6, 0, evidence(3));
    let output = audit_bytes(dir.path(), "early", &early.bytes(), true);
    assert!(output.status.success(), "{}", stderr(&output));
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    let recorded = &value["report"]["evidence"];
    assert_eq!(recorded.as_array().map(Vec::len), Some(1), "{value}");
    assert_eq!(recorded[0]["recorded_at"], 3, "{value}");
    assert_eq!(recorded[0]["height"], 2, "{value}");
    let validators = value["report"]["validators"].as_array().unwrap().len();
    assert_eq!(validators, 3, "14 left the set: {value}");

    let late = ledger::build_governed_with(6, 0, evidence(5));
    let output = audit_bytes(dir.path(), "late", &late.bytes(), false);
    assert_fails_naming(
        &output,
        "height 5: evidence 0: the validator is not in the set",
        "evidence by a validator removed since",
    );
}
