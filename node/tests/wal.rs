//! WAL framing: CRC32, torn tails at every byte, corruption in the middle,
//! the file implementation, and replay from the last start-of-height marker.

use symbiont_node::consensus::wal::{
    FileWal, MAX_RECORD_BYTES, Wal, WalEntry, WalError, WalStorage, crc32, decode_log, frame,
};
use symbiont_node::consensus::{Timeout, TimeoutKind, ValidatorSet};
use symbiont_node::sim::SimContext;

type C = SimContext;

fn marker(height: u64) -> WalEntry<C> {
    WalEntry::StartHeight {
        height,
        validators: ValidatorSet::new((0..4u16).map(|i| (i, 1))).unwrap(),
        excluded_proposers: vec![3],
    }
}

fn timeout(round: u32) -> WalEntry<C> {
    WalEntry::Timeout(Timeout {
        height: 5,
        round,
        kind: TimeoutKind::Prevote,
    })
}

fn log(entries: &[WalEntry<C>]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|e| frame(&symbiont_contracts::codec::encode(e)).unwrap())
        .collect()
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn a_torn_tail_at_any_byte_drops_only_the_last_record() {
    let entries = vec![marker(5), timeout(0), timeout(1)];
    let bytes = log(&entries);
    let boundaries: Vec<usize> = {
        let mut at = 0;
        let mut b = vec![0];
        for e in &entries {
            at += frame(&symbiont_contracts::codec::encode(e)).unwrap().len();
            b.push(at);
        }
        b
    };
    for cut in 0..=bytes.len() {
        let replay = decode_log::<C>(&bytes[..cut]).unwrap();
        let whole = boundaries.iter().filter(|b| **b <= cut).count() - 1;
        assert_eq!(replay.entries, entries[..whole], "cut at {cut}");
        assert_eq!(replay.torn_tail, !boundaries.contains(&cut), "cut at {cut}");
        assert_eq!(replay.valid_len, boundaries[whole]);
    }
}

#[test]
fn a_garbled_last_record_is_torn_but_a_garbled_middle_is_corruption() {
    let entries = vec![marker(5), timeout(0), timeout(1)];
    let bytes = log(&entries);
    let mut last = bytes.clone();
    *last.last_mut().unwrap() ^= 0xff;
    let replay = decode_log::<C>(&last).unwrap();
    assert!(replay.torn_tail);
    assert_eq!(replay.entries.len(), 2);
    let mut middle = bytes.clone();
    middle[bytes.len() / 2] ^= 0xff;
    assert!(matches!(
        decode_log::<C>(&middle),
        Err(WalError::Corrupt { .. })
    ));
    let mut oversize = bytes.clone();
    oversize[0..4].copy_from_slice(&(MAX_RECORD_BYTES as u32 + 1).to_le_bytes());
    assert!(matches!(
        decode_log::<C>(&oversize),
        Err(WalError::Corrupt { .. })
    ));
}

#[test]
fn file_wal_replays_from_the_last_marker_and_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consensus.wal");
    {
        let mut wal: Wal<C> = Wal::new(Box::new(FileWal::open(&path).unwrap()));
        wal.start_height(&marker(4)).unwrap();
        wal.append(&timeout(0)).unwrap();
        wal.start_height(&marker(5)).unwrap();
        wal.append(&timeout(1)).unwrap();
        wal.sync().unwrap();
    }
    // A torn write after the last sync.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, &[9, 0, 0, 0, 1, 2]).unwrap();
    let mut wal: Wal<C> = Wal::new(Box::new(FileWal::open(&path).unwrap()));
    let replay = wal.replay().unwrap();
    assert!(replay.torn_tail);
    assert_eq!(replay.entries, vec![marker(5), timeout(1)]);
    // New records follow the last good one.
    wal.append(&timeout(2)).unwrap();
    wal.sync().unwrap();
    let replay = wal.replay().unwrap();
    assert!(!replay.torn_tail);
    assert_eq!(replay.entries, vec![marker(5), timeout(1), timeout(2)]);
    let mut storage = FileWal::open(&path).unwrap();
    assert_eq!(
        storage.read_all().unwrap(),
        log(&[marker(5), timeout(1), timeout(2)])
    );
}
