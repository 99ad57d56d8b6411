//! The consensus write-ahead log: every input the core processes at the
//! current height, and every message this validator signs, framed with a
//! length and a CRC32. Our own signed messages are synced before they leave;
//! peers' messages may be buffered (a sync flushes them too, since the log
//! is append-only). Replay starts at the last start-of-height marker.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use symbiont_contracts::codec;

use super::signed::{SignedProposal, SignedVote};
use super::types::{Context, Height, Round, Timeout, ValidatorSet};

/// Largest record accepted (a proposal carries a whole value).
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
const HEADER_BYTES: usize = 8;

/// One WAL record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum WalEntry<C: Context> {
    /// Start of a height: everything before it can be dropped.
    StartHeight {
        height: Height,
        validators: ValidatorSet<C>,
        excluded_proposers: Vec<C::Address>,
    },
    Proposal {
        proposal: SignedProposal<C>,
        valid: bool,
    },
    Vote(SignedVote<C>),
    ProposeValue {
        height: Height,
        round: Round,
        value: C::Value,
    },
    Timeout(Timeout),
    /// A proposal we signed (recorded before it is sent).
    OwnProposal(SignedProposal<C>),
    /// A vote we signed (recorded before it is sent).
    OwnVote(SignedVote<C>),
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("WAL corrupt at byte {offset}: {reason}")]
    Corrupt { offset: usize, reason: String },
    #[error("WAL record of {0} bytes exceeds the limit")]
    RecordTooLarge(usize),
}

/// Bytes storage under the WAL. `append` may buffer; `sync` makes every
/// appended byte durable; `reset` durably empties the log.
pub trait WalStorage: Send {
    fn append(&mut self, bytes: &[u8]) -> Result<(), WalError>;
    fn sync(&mut self) -> Result<(), WalError>;
    fn reset(&mut self) -> Result<(), WalError>;
    /// Cuts the log to `len` bytes, durably (drops a torn tail).
    fn truncate(&mut self, len: usize) -> Result<(), WalError>;
    fn read_all(&mut self) -> Result<Vec<u8>, WalError>;
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320).
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc = TABLE[((crc ^ *byte as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// `[length: u32 LE][crc32 of payload: u32 LE][payload]`.
pub fn frame(payload: &[u8]) -> Result<Vec<u8>, WalError> {
    if payload.len() > MAX_RECORD_BYTES {
        return Err(WalError::RecordTooLarge(payload.len()));
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// What a log holds.
#[derive(Debug)]
pub struct Replay<C: Context> {
    pub entries: Vec<WalEntry<C>>,
    /// The last record was cut short or garbled (a crash during a write
    /// that was never synced); it was dropped.
    pub torn_tail: bool,
    /// Bytes of the log up to the end of the last good record.
    pub valid_len: usize,
}

/// Decodes every record. A bad last record is a torn write and is dropped;
/// a bad record followed by more data is corruption.
pub fn decode_log<C: Context>(bytes: &[u8]) -> Result<Replay<C>, WalError> {
    let mut entries = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < HEADER_BYTES {
            return Ok(Replay {
                entries,
                torn_tail: true,
                valid_len: offset,
            });
        }
        let length = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if length > MAX_RECORD_BYTES {
            return Err(WalError::Corrupt {
                offset,
                reason: format!("record length {length} over the limit"),
            });
        }
        let Some(payload) = rest.get(HEADER_BYTES..HEADER_BYTES + length) else {
            return Ok(Replay {
                entries,
                torn_tail: true,
                valid_len: offset,
            });
        };
        let is_last = HEADER_BYTES + length == rest.len();
        if crc32(payload) != crc {
            if is_last {
                return Ok(Replay {
                    entries,
                    torn_tail: true,
                    valid_len: offset,
                });
            }
            return Err(WalError::Corrupt {
                offset,
                reason: "CRC mismatch".into(),
            });
        }
        let entry = codec::decode(payload).map_err(|e| WalError::Corrupt {
            offset,
            reason: e.to_string(),
        })?;
        entries.push(entry);
        offset += HEADER_BYTES + length;
    }
    Ok(Replay {
        entries,
        torn_tail: false,
        valid_len: bytes.len(),
    })
}

/// The entries from the last start-of-height marker on.
pub fn since_last_marker<C: Context>(entries: Vec<WalEntry<C>>) -> Vec<WalEntry<C>> {
    let start = entries
        .iter()
        .rposition(|e| matches!(e, WalEntry::StartHeight { .. }))
        .unwrap_or(0);
    entries.into_iter().skip(start).collect()
}

/// The typed log over a storage.
pub struct Wal<C: Context> {
    storage: Box<dyn WalStorage>,
    _context: std::marker::PhantomData<C>,
}

impl<C: Context> Wal<C> {
    pub fn new(storage: Box<dyn WalStorage>) -> Self {
        Self {
            storage,
            _context: std::marker::PhantomData,
        }
    }

    pub fn append(&mut self, entry: &WalEntry<C>) -> Result<(), WalError> {
        self.storage.append(&frame(&codec::encode(entry))?)
    }

    pub fn sync(&mut self) -> Result<(), WalError> {
        self.storage.sync()
    }

    /// Drops the previous height's records and writes the marker.
    pub fn start_height(&mut self, marker: &WalEntry<C>) -> Result<(), WalError> {
        debug_assert!(matches!(marker, WalEntry::StartHeight { .. }));
        self.storage.reset()?;
        self.append(marker)
    }

    /// Everything since the last marker. A torn tail is cut off, so that
    /// new records follow the last good one.
    pub fn replay(&mut self) -> Result<Replay<C>, WalError> {
        let bytes = self.storage.read_all()?;
        let replay = decode_log(&bytes)?;
        if replay.torn_tail {
            self.storage.truncate(replay.valid_len)?;
        }
        Ok(Replay {
            entries: since_last_marker(replay.entries),
            torn_tail: replay.torn_tail,
            valid_len: replay.valid_len,
        })
    }
}

/// A WAL file. `reset` replaces it atomically with an empty file.
pub struct FileWal {
    path: PathBuf,
    file: File,
}

impl FileWal {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, WalError> {
        let path = path.into();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self { path, file })
    }
}

impl WalStorage for FileWal {
    fn append(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        self.file.write_all(bytes)?;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        self.file.sync_data()?;
        Ok(())
    }

    fn reset(&mut self) -> Result<(), WalError> {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let temp = self.path.with_file_name(name);
        super::signer::write_atomically(&self.path, &temp, &[])?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }

    fn truncate(&mut self, len: usize) -> Result<(), WalError> {
        self.file.set_len(len as u64)?;
        self.file.sync_all()?;
        Ok(())
    }

    fn read_all(&mut self) -> Result<Vec<u8>, WalError> {
        let mut bytes = Vec::new();
        File::open(&self.path)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// In-memory storage that models a crash: bytes appended after the last
/// sync may be lost, wholly or in part (a torn write).
#[derive(Clone, Debug, Default)]
pub struct MemoryWal {
    pub bytes: Vec<u8>,
    pub durable_len: usize,
}

impl MemoryWal {
    /// Keeps the durable prefix and `keep_unsynced` bytes of what follows.
    pub fn crash(&mut self, keep_unsynced: usize) {
        let keep = self.durable_len + keep_unsynced.min(self.bytes.len() - self.durable_len);
        self.bytes.truncate(keep);
        self.durable_len = self.bytes.len();
    }

    pub fn unsynced_len(&self) -> usize {
        self.bytes.len() - self.durable_len
    }
}

/// A shared handle, so the simulator keeps the "disk" across restarts.
#[derive(Clone, Debug, Default)]
pub struct SharedMemoryWal(pub std::sync::Arc<std::sync::Mutex<MemoryWal>>);

impl WalStorage for SharedMemoryWal {
    fn append(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        self.0
            .lock()
            .expect("wal lock")
            .bytes
            .extend_from_slice(bytes);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), WalError> {
        let mut wal = self.0.lock().expect("wal lock");
        wal.durable_len = wal.bytes.len();
        Ok(())
    }
    fn reset(&mut self) -> Result<(), WalError> {
        let mut wal = self.0.lock().expect("wal lock");
        wal.bytes.clear();
        wal.durable_len = 0;
        Ok(())
    }
    fn truncate(&mut self, len: usize) -> Result<(), WalError> {
        let mut wal = self.0.lock().expect("wal lock");
        wal.bytes.truncate(len);
        wal.durable_len = wal.durable_len.min(len);
        Ok(())
    }
    fn read_all(&mut self) -> Result<Vec<u8>, WalError> {
        Ok(self.0.lock().expect("wal lock").bytes.clone())
    }
}

/// Removes a WAL file (tests and tools).
pub fn remove(path: &std::path::Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
