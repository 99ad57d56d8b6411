//! The consensus write-ahead log: every input the core processes at the
//! current height, and every message this validator signs, framed with a
//! length and a CRC32. Our own signed messages are synced before they leave;
//! peers' messages may be buffered (a sync flushes them too, since the log
//! is append-only). Replay starts at the last start-of-height marker.
//!
//! A power cut leaves anything after the last sync: a prefix of what was
//! appended, zeros (the file grew but its data never reached the disk) or
//! garbage. The storage therefore knows how much of the log was synced
//! (`WalStorage::synced_len`): undecodable bytes after that point are a
//! torn tail and are cut off; damage before it is corruption.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use symbiont_contracts::codec;

use super::core::Validity;
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
    /// A proposal with the verdict the core was given.
    Proposal {
        proposal: SignedProposal<C>,
        validity: Validity,
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
    /// We went to `round` on votes beyond the lookahead window (which are
    /// not recorded themselves).
    JumpToRound {
        height: Height,
        round: Round,
    },
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
    /// Cuts the log to `len` bytes, durably (drops a torn tail): what
    /// remains counts as synced.
    fn truncate(&mut self, len: usize) -> Result<(), WalError>;
    fn read_all(&mut self) -> Result<Vec<u8>, WalError>;
    /// How many bytes of the log a completed sync made durable (a lower
    /// bound): everything before it was written whole.
    fn synced_len(&mut self) -> Result<usize, WalError>;
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

/// Decodes every record. `synced_len` bytes were durable: a record that
/// cannot be read (cut short, a length over the limit, a CRC mismatch, a
/// payload that does not decode, such as a zero-filled header whose CRC
/// of nothing is 0) starting there or later is a torn tail and ends the
/// log; one starting before it is corruption, as is a log shorter than
/// what was synced.
pub fn decode_log<C: Context>(bytes: &[u8], synced_len: usize) -> Result<Replay<C>, WalError> {
    if bytes.len() < synced_len {
        return Err(WalError::Corrupt {
            offset: bytes.len(),
            reason: format!("log ends before its synced length {synced_len}"),
        });
    }
    let mut entries = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match decode_record(&bytes[offset..]) {
            Ok((entry, length)) => {
                entries.push(entry);
                offset += length;
            }
            Err(reason) if offset < synced_len => {
                return Err(WalError::Corrupt { offset, reason });
            }
            Err(_) => {
                return Ok(Replay {
                    entries,
                    torn_tail: true,
                    valid_len: offset,
                });
            }
        }
    }
    Ok(Replay {
        entries,
        torn_tail: false,
        valid_len: bytes.len(),
    })
}

/// The record at the start of `rest` and its framed length, or why it
/// cannot be read.
fn decode_record<C: Context>(rest: &[u8]) -> Result<(WalEntry<C>, usize), String> {
    if rest.len() < HEADER_BYTES {
        return Err("record header cut short".into());
    }
    let length = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if length > MAX_RECORD_BYTES {
        return Err(format!("record length {length} over the limit"));
    }
    let payload = rest
        .get(HEADER_BYTES..HEADER_BYTES + length)
        .ok_or("record cut short")?;
    if crc32(payload) != crc {
        return Err("CRC mismatch".into());
    }
    let entry = codec::decode(payload).map_err(|e| e.to_string())?;
    Ok((entry, HEADER_BYTES + length))
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
        let synced_len = self.storage.synced_len()?;
        let replay = decode_log(&bytes, synced_len)?;
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

/// A WAL file: a header, then the records.
///
/// The header is `"SYMBWAL1"`, the synced length of the records (u64 LE)
/// and the CRC32 of those 8 bytes (u32 LE), 20 bytes in all. A sync first
/// makes the records durable, then writes the new length into the header
/// in place, which the next sync makes durable: the header never claims
/// more than the disk holds. A header whose CRC fails (torn in a power cut)
/// counts as 0. `reset` replaces the file atomically with a bare header.
pub struct FileWal {
    path: PathBuf,
    file: File,
    /// Bytes of records in the file.
    len: usize,
    /// What the header read at open, or the last sync, says.
    synced_len: usize,
}

const FILE_MAGIC: &[u8; 8] = b"SYMBWAL1";
const FILE_HEADER_BYTES: usize = 20;

fn file_header(synced_len: usize) -> [u8; FILE_HEADER_BYTES] {
    let mut header = [0u8; FILE_HEADER_BYTES];
    header[..8].copy_from_slice(FILE_MAGIC);
    let length = (synced_len as u64).to_le_bytes();
    header[8..16].copy_from_slice(&length);
    header[16..20].copy_from_slice(&crc32(&length).to_le_bytes());
    header
}

impl FileWal {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, WalError> {
        let path = path.into();
        let empty = match fs::metadata(&path) {
            Ok(metadata) => metadata.len() == 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(e.into()),
        };
        if empty {
            // Created whole or not at all: a crash cannot leave half a header.
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".tmp");
            super::signer::write_atomically(&path, &path.with_file_name(name), &file_header(0))?;
        }
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let size = file.metadata()?.len() as usize;
        let mut header = [0u8; FILE_HEADER_BYTES];
        if size < FILE_HEADER_BYTES || {
            file.read_exact(&mut header)?;
            &header[..8] != FILE_MAGIC
        } {
            return Err(WalError::Corrupt {
                offset: 0,
                reason: format!("{} is not a Symbiont WAL file", path.display()),
            });
        }
        let length: [u8; 8] = header[8..16].try_into().expect("8 bytes");
        let crc = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
        let synced_len = if crc32(&length) == crc {
            u64::from_le_bytes(length) as usize
        } else {
            0
        };
        Ok(Self {
            path,
            file,
            len: size - FILE_HEADER_BYTES,
            synced_len,
        })
    }

    fn write_header(&mut self, synced_len: usize) -> Result<(), WalError> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(&file_header(synced_len), 0)?;
        Ok(())
    }
}

impl WalStorage for FileWal {
    fn append(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(bytes, (FILE_HEADER_BYTES + self.len) as u64)?;
        self.len += bytes.len();
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        self.file.sync_data()?;
        self.synced_len = self.len;
        self.write_header(self.len)
    }

    fn reset(&mut self) -> Result<(), WalError> {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let temp = self.path.with_file_name(name);
        super::signer::write_atomically(&self.path, &temp, &file_header(0))?;
        self.file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        self.len = 0;
        self.synced_len = 0;
        Ok(())
    }

    fn truncate(&mut self, len: usize) -> Result<(), WalError> {
        self.file.set_len((FILE_HEADER_BYTES + len) as u64)?;
        self.file.sync_all()?;
        // Everything up to `len` was read whole and is synced now.
        self.len = len;
        self.synced_len = len;
        self.write_header(len)
    }

    fn read_all(&mut self) -> Result<Vec<u8>, WalError> {
        let mut bytes = Vec::new();
        File::open(&self.path)?.read_to_end(&mut bytes)?;
        Ok(bytes.split_off(FILE_HEADER_BYTES.min(bytes.len())))
    }

    fn synced_len(&mut self) -> Result<usize, WalError> {
        Ok(self.synced_len)
    }
}

/// In-memory storage that models a crash: bytes appended after the last
/// sync may be lost, wholly or in part (a torn write), and the disk may
/// hold zeros or garbage after what survived.
#[derive(Clone, Debug, Default)]
pub struct MemoryWal {
    pub bytes: Vec<u8>,
    /// Bytes that are on the disk whatever happens next.
    pub durable_len: usize,
    /// Bytes the last completed sync covered (what a file's header says).
    pub synced_len: usize,
}

impl MemoryWal {
    /// Keeps the durable prefix and `keep_unsynced` bytes of what follows.
    pub fn crash(&mut self, keep_unsynced: usize) {
        self.crash_leaving(keep_unsynced, &[]);
    }

    /// Keeps the durable prefix and `keep_unsynced` bytes of what follows,
    /// then `junk` (zeros or garbage the power cut left). What is on the
    /// disk then stays there, but only the last sync vouches for it.
    pub fn crash_leaving(&mut self, keep_unsynced: usize, junk: &[u8]) {
        let keep = self.durable_len + keep_unsynced.min(self.bytes.len() - self.durable_len);
        self.bytes.truncate(keep);
        self.bytes.extend_from_slice(junk);
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
        wal.synced_len = wal.bytes.len();
        Ok(())
    }
    fn reset(&mut self) -> Result<(), WalError> {
        *self.0.lock().expect("wal lock") = MemoryWal::default();
        Ok(())
    }
    fn truncate(&mut self, len: usize) -> Result<(), WalError> {
        let mut wal = self.0.lock().expect("wal lock");
        wal.bytes.truncate(len);
        wal.durable_len = wal.durable_len.min(len);
        wal.synced_len = wal.durable_len;
        Ok(())
    }
    fn read_all(&mut self) -> Result<Vec<u8>, WalError> {
        Ok(self.0.lock().expect("wal lock").bytes.clone())
    }
    fn synced_len(&mut self) -> Result<usize, WalError> {
        Ok(self.0.lock().expect("wal lock").synced_len)
    }
}

/// Removes a WAL file (tests and tools).
pub fn remove(path: &std::path::Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
