//! Golden vectors of the export file format: the bytes docs/export-format.md
//! quotes are the bytes this build writes, so a reader written from the
//! document alone reads our files. If a vector changes, the format
//! changed: bump `export::VERSION` and update the document.

use symbiont_contracts::codec;
use symbiont_contracts::hash::Hash;
use symbiont_node::export::{
    self, BlockFrame, EndFrame, ExportReader, Frame, KIND_BLOCK, KIND_END,
};

#[path = "support/ledger.rs"]
mod ledger;

/// The text of the fenced block that follows `<!-- golden: NAME -->` in
/// docs/export-format.md, whitespace removed.
fn quoted(name: &str) -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/export-format.md"
    ))
    .unwrap();
    let marker = format!("<!-- golden: {name} -->");
    let after = doc
        .split_once(&marker)
        .unwrap_or_else(|| panic!("docs/export-format.md has no {marker}"))
        .1;
    let body = after.split_once("```").unwrap().1;
    let body = body.split_once('\n').unwrap().1;
    let body = body.split_once("```").unwrap().0;
    body.split_whitespace().collect()
}

/// The block frame the document spells out byte by byte.
fn sample_frame() -> Vec<u8> {
    let frame = BlockFrame {
        height: 1,
        block: b"block".to_vec(),
        certificate: b"cert".to_vec(),
        results: vec![String::new(), "bad_nonce".into()],
    };
    export::encode_frame(KIND_BLOCK, &frame.payload())
}

#[test]
fn the_documented_block_frame_is_what_we_write() {
    let bytes = sample_frame();
    assert_eq!(
        hex::encode(&bytes),
        quoted("block-frame"),
        "docs/export-format.md, the block frame example"
    );
}

#[test]
fn the_documented_end_frame_and_header_are_what_we_write() {
    let end = EndFrame {
        height: 2,
        block_hash: Hash([0xAB; 32]),
    };
    let mut bytes = export::header().to_vec();
    bytes.extend(export::encode_frame(KIND_END, &end.payload()));
    assert_eq!(hex::encode(&bytes), quoted("header-and-end-frame"));
}

/// A whole export of a tiny ledger (support/ledger.rs, 2 blocks of 1
/// transaction): its size and BLAKE3 hash are in the document.
#[test]
fn the_documented_tiny_export_is_what_we_write() {
    let ledger = ledger::build(2, 1, false);
    let bytes = ledger.bytes();
    let summary = format!(
        "length {} blake3 {}",
        bytes.len(),
        Hash::of_bytes(&bytes).to_hex()
    );
    assert_eq!(
        summary.split_whitespace().collect::<String>(),
        quoted("tiny-export"),
        "docs/export-format.md, the tiny export: {summary}"
    );
    // And it reads back frame by frame as written.
    let (mut reader, genesis) = ExportReader::open(bytes.as_slice()).unwrap();
    assert_eq!(genesis, codec::encode(&ledger.genesis));
    for frame in &ledger.frames {
        assert_eq!(
            reader.next_frame().unwrap(),
            Some(Frame::Block(frame.clone()))
        );
    }
    assert_eq!(reader.next_frame().unwrap(), Some(Frame::End(ledger.end)));
    assert_eq!(reader.next_frame().unwrap(), None);
}

#[test]
fn the_sample_frame_decodes_and_bad_lengths_are_refused() {
    let bytes = sample_frame();
    let payload = &bytes[5..bytes.len() - 32];
    let frame = BlockFrame::decode(payload, 0).unwrap();
    assert_eq!(frame.results, vec!["".to_string(), "bad_nonce".to_string()]);
    // A result count the payload cannot hold, and a payload cut short.
    let mut lying = payload.to_vec();
    let count_at = 8 + 4 + 5 + 4 + 4;
    lying[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(BlockFrame::decode(&lying, 0).is_err());
    for cut in 0..payload.len() {
        assert!(BlockFrame::decode(&payload[..cut], 0).is_err(), "cut {cut}");
    }
}
