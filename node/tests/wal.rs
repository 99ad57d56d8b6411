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
        let whole = boundaries.iter().filter(|b| **b <= cut).count() - 1;
        // Whatever was synced before the cut (any record boundary).
        for synced in boundaries.iter().filter(|b| **b <= cut) {
            let replay = decode_log::<C>(&bytes[..cut], *synced).unwrap();
            assert_eq!(replay.entries, entries[..whole], "cut at {cut}");
            assert_eq!(replay.torn_tail, !boundaries.contains(&cut), "cut at {cut}");
            assert_eq!(replay.valid_len, boundaries[whole]);
        }
    }
}

/// Offsets where each record of `entries` ends in `log(entries)`.
fn ends(entries: &[WalEntry<C>]) -> Vec<usize> {
    let mut at = 0;
    entries
        .iter()
        .map(|e| {
            at += frame(&symbiont_contracts::codec::encode(e)).unwrap().len();
            at
        })
        .collect()
}

#[test]
fn damage_after_the_synced_length_is_a_torn_tail_before_it_corruption() {
    let entries = vec![marker(5), timeout(0), timeout(1)];
    let bytes = log(&entries);
    let ends = ends(&entries);
    let mut last = bytes.clone();
    *last.last_mut().unwrap() ^= 0xff;
    let replay = decode_log::<C>(&last, ends[1]).unwrap();
    assert!(replay.torn_tail);
    assert_eq!(replay.entries.len(), 2);
    assert!(matches!(
        decode_log::<C>(&last, bytes.len()),
        Err(WalError::Corrupt { offset, .. }) if offset == ends[1]
    ));
    // The middle record garbled: corruption if it was synced, else a torn
    // tail that also drops what follows it (never synced either).
    let mut middle = bytes.clone();
    middle[ends[0] + 9] ^= 0xff;
    assert!(matches!(
        decode_log::<C>(&middle, bytes.len()),
        Err(WalError::Corrupt { .. })
    ));
    let replay = decode_log::<C>(&middle, ends[0]).unwrap();
    assert!(replay.torn_tail);
    assert_eq!(replay.entries, entries[..1]);
    assert_eq!(replay.valid_len, ends[0]);
    let mut oversize = bytes.clone();
    oversize[0..4].copy_from_slice(&(MAX_RECORD_BYTES as u32 + 1).to_le_bytes());
    assert!(matches!(
        decode_log::<C>(&oversize, ends[0]),
        Err(WalError::Corrupt { .. })
    ));
    assert!(decode_log::<C>(&oversize, 0).unwrap().torn_tail);
    assert!(matches!(
        decode_log::<C>(&bytes[..ends[1]], ends[2]),
        Err(WalError::Corrupt { .. })
    ));
}

/// A power cut can leave zeros (the file grew, its data never reached the
/// disk) or garbage after the last sync. A zero header passes its CRC (the
/// CRC of nothing is 0) and then fails to decode: still a torn tail.
#[test]
fn zeros_or_garbage_after_the_last_sync_are_a_torn_tail() {
    let entries = vec![marker(5), timeout(0)];
    let synced = log(&entries);
    let unsynced = log(&[timeout(1)]);
    let mut garbage_source = 0x1234_5678u32;
    let mut garbage = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                garbage_source = garbage_source
                    .wrapping_mul(1_664_525)
                    .wrapping_add(1_013_904_223);
                (garbage_source >> 24) as u8
            })
            .collect()
    };
    for kept in [0, 3, unsynced.len()] {
        for junk in [vec![0u8; 8], vec![0u8; 4096], garbage(7), garbage(600)] {
            let mut bytes = synced.clone();
            bytes.extend_from_slice(&unsynced[..kept]);
            bytes.extend_from_slice(&junk);
            let replay = decode_log::<C>(&bytes, synced.len()).unwrap();
            let mut expected = entries.clone();
            if kept == unsynced.len() {
                expected.push(timeout(1));
            }
            assert_eq!(replay.entries, expected, "kept {kept}, junk {}", junk.len());
            assert!(replay.torn_tail);
        }
    }
    // The same zeros inside the synced part are corruption.
    let mut bytes = log(&entries[..1]);
    let zeros_at = bytes.len();
    bytes.extend_from_slice(&[0u8; 8]);
    bytes.extend_from_slice(&log(&entries[1..]));
    assert!(matches!(
        decode_log::<C>(&bytes, bytes.len()),
        Err(WalError::Corrupt { offset, .. }) if offset == zeros_at
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
    // A torn write after the last sync, then the zeros of a grown file.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, &[9, 0, 0, 0, 1, 2]).unwrap();
    std::io::Write::write_all(&mut file, &[0; 4096]).unwrap();
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
    assert_eq!(
        storage.synced_len().unwrap(),
        storage.read_all().unwrap().len()
    );
}

#[test]
fn file_wal_refuses_damage_to_what_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consensus.wal");
    {
        let mut wal: Wal<C> = Wal::new(Box::new(FileWal::open(&path).unwrap()));
        wal.start_height(&marker(5)).unwrap();
        wal.append(&timeout(1)).unwrap();
        wal.sync().unwrap();
        // The header is updated after the sync; the next sync covers it.
        wal.append(&timeout(2)).unwrap();
        wal.sync().unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let header = bytes.len() - log(&[marker(5), timeout(1), timeout(2)]).len();
    bytes[header + 12] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let mut wal: Wal<C> = Wal::new(Box::new(FileWal::open(&path).unwrap()));
    assert!(matches!(wal.replay(), Err(WalError::Corrupt { .. })));
    // Not a WAL at all.
    std::fs::write(&path, b"something else entirely").unwrap();
    assert!(matches!(
        FileWal::open(&path),
        Err(WalError::Corrupt { offset: 0, .. })
    ));
}
