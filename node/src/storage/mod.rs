//! Durable storage of decided blocks, their commit certificates and the
//! application state, on sled 0.34. The only module of the node that knows
//! sled; blocks and certificates are opaque canonical bytes here, named by
//! the hash the caller gives.
//!
//! The layout on disk is described in `docs/storage.md`; [`layout`] holds
//! the key encodings.
//!
//! Choices:
//! - One sled tree ([`layout::TREE`]) with one-byte key prefixes, and one
//!   `apply_batch` per block: the block, its certificate, its hashes, its
//!   state writes and the new tip land together or not at all. No
//!   multi-tree transaction, so no closure that re-runs on conflict.
//! - [`Storage::commit`] flushes the whole Db before it returns: once it
//!   returns Ok the block survives kill -9 (not necessarily power loss: on
//!   Linux sled syncs with `sync_file_range`, which skips the disk cache).
//! - Height 0 is the genesis state. A new data dir holds only the genesis
//!   hash and [`Storage::tip`] is `None`: the caller computes the genesis
//!   state from the genesis file and stores it with
//!   [`Storage::commit_genesis`] (tip becomes height 0, block hash = the
//!   genesis hash, no block or certificate). Block 1 is refused until then,
//!   so that [`Storage::load_state`] is always the full state, genesis
//!   records included. `load_state` returns `None` while the tip is `None`.
//! - The tip record carries a checksum of the state records: the number of
//!   records and the sum modulo 2^256 of one keyed blake3 hash per record.
//!   A sum can be kept up to date per block from the writes and the values
//!   they replace (one read per written key), where a hash over all the
//!   records in order would need the whole state at every block. It detects
//!   damage, not an attacker (sums of hashes can be forged). The cost is at
//!   open: every state record is read and hashed once (and again by
//!   `load_state`, which checks it too).
//! - Open checks, in this order: the format version, the genesis hash, the
//!   tip record; then that the tip's block, certificate and hash record
//!   exist and agree with the tip, that the last key under each of the
//!   block, certificate and hash prefixes is the tip's height (so nothing
//!   lies beyond the tip), and the state checksum. It does not walk every
//!   height below the tip (that would read every block at every start).
//! - A second open of a data dir (by another process or by this one) is
//!   [`StorageError::Locked`]: we take an exclusive `flock` on
//!   [`layout::LOCK_FILE`] before opening sled, waiting up to
//!   [`LOCK_WAIT_MS`] for it (a just-forked child can hold a copy of the
//!   descriptor for a moment). sled 0.34 locks its own `db`
//!   file too, but reports a failure only as `Error::Io` of kind `Other`
//!   with the text "could not acquire lock on ..."; that text is also
//!   mapped to `Locked`, as a second line.
//! - A commit at a height already stored is [`StorageError::AlreadyCommitted`]
//!   if its block hash and app hash are the stored ones (a caller may
//!   ignore it) and [`StorageError::Conflict`] otherwise (two decisions at
//!   one height: never ignore it); any other height but tip + 1 is
//!   [`StorageError::NotNextHeight`]. Storage does not check that the block
//!   hash is the hash of the block bytes, nor that the app hash follows
//!   from the writes: both depend on formats it does not know.
//! - Errors: data from disk that does not decode, or does not agree with
//!   the rest, is [`StorageError::Damaged`] naming the key; nothing this
//!   module reads from disk panics (sled's own decoding of its files is
//!   sled's). sled's `Corruption` is `Damaged` too. Callers
//!   should stop the node on any error from `commit`: an I/O error after
//!   the batch was applied leaves the block in sled's memory but maybe not
//!   on disk.
//! - Commits are serialised by a mutex around the cached tip, so `&self`
//!   suffices and the height check cannot race the write.
//! - [`Storage::close`] flushes and drops the Db, waits until sled has let
//!   go of its `db` file, then releases the lock. The wait is needed: sled's
//!   I/O threads can keep the file (and its flock) for a moment after the
//!   Db is dropped, and a reopen in that moment failed with sled's lock
//!   error (seen in our tests). For the same reason open retries sled's lock
//!   error for up to [`LOCK_WAIT_MS`] once it holds our own lock.
//!   Dropping a `Storage` without `close` also flushes (sled does on drop),
//!   but cannot report an error and does not wait.

use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use symbiont_contracts::Hash;
use symbiont_contracts::state::{State, WriteSet};

pub mod layout;

use layout::{Prefix, StateDigest, TipRecord};

/// What consensus decided at one height, ready to store.
#[derive(Debug, Clone, Copy)]
pub struct CommitRecord<'a> {
    /// Must be the tip's height + 1 (1 for the first block).
    pub height: u64,
    pub block_hash: Hash,
    /// Canonical block bytes.
    pub block: &'a [u8],
    /// Canonical commit certificate bytes.
    pub certificate: &'a [u8],
    /// The block's state writes, keys strictly ascending (as
    /// `State::take_writes` gives them).
    pub writes: &'a WriteSet,
    /// The app hash after the block.
    pub app_hash: Hash,
    /// The height's encoded events (`crate::events::HeightEvents`), stored
    /// under `e` in the same batch; None stores none.
    pub events: Option<&'a [u8]>,
}

/// The last stored height. Height 0 is the genesis state; its block hash
/// is the genesis hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    pub height: u64,
    pub block_hash: Hash,
    pub app_hash: Hash,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "data dir {dir} is already open (by another node process?): stop that process or use another data dir"
    )]
    Locked { dir: PathBuf },
    #[error(
        "data dir {dir} belongs to genesis {stored}, not {given}: use this chain's data dir, or move the old one away"
    )]
    WrongGenesis {
        dir: PathBuf,
        stored: Hash,
        given: Hash,
    },
    #[error(
        "data dir {dir} has storage format {found}, this build reads format {supported}: run a matching build"
    )]
    UnsupportedFormat {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "data dir {dir} is damaged at {at}: {problem}; restore it from a backup or resync it from peers"
    )]
    Damaged {
        dir: PathBuf,
        at: String,
        problem: String,
    },
    #[error("cannot store height {given}: the next height is {expected}")]
    NotNextHeight { given: u64, expected: u64 },
    #[error("cannot store block 1: store the genesis state first (Storage::commit_genesis)")]
    NoGenesisState,
    #[error("the genesis state is already stored (tip height {tip_height})")]
    GenesisStateExists { tip_height: u64 },
    #[error("height {height} is already stored, with the same block {block_hash} and app hash")]
    AlreadyCommitted { height: u64, block_hash: Hash },
    #[error(
        "height {height} is already stored with {what} {stored}, not {given}: two different decisions at one height; stop the node and investigate"
    )]
    Conflict {
        height: u64,
        what: &'static str,
        stored: Hash,
        given: Hash,
    },
    #[error(
        "the writes of height {height} are not in strictly ascending key order at index {index}: a bug in the caller"
    )]
    UnorderedWrites { height: u64, index: usize },
    #[error("I/O error on data dir {dir} while {doing}: {source}")]
    Io {
        dir: PathBuf,
        doing: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("sled failed on data dir {dir} while {doing}: {detail}")]
    Sled {
        dir: PathBuf,
        doing: &'static str,
        detail: String,
    },
}

/// How long open waits for our lock file and then for sled's own lock, and
/// close for sled's release (see the module doc).
pub const LOCK_WAIT_MS: u64 = 2_000;
const LOCK_POLL_MS: u64 = 5;

/// State records: canonical key bytes -> record bytes.
type Records = BTreeMap<Vec<u8>, Vec<u8>>;

/// The cached tip and state checksum; the mutex serialises commits.
#[derive(Debug, Clone, Copy)]
struct Summary {
    tip: Option<Tip>,
    digest: StateDigest,
}

/// An open data dir. Fields drop in order: the tree and Db (which flush)
/// before the lock is released.
pub struct Storage {
    dir: PathBuf,
    tree: sled::Tree,
    db: sled::Db,
    summary: Mutex<Summary>,
    _lock: File,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("dir", &self.dir)
            .field("tip", &self.tip())
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens (or creates) the data dir `dir`, which storage owns, and checks
    /// it (see the module doc). `cache_capacity_bytes` bounds sled's page
    /// cache (sled's default is 1 GiB).
    pub fn open(
        dir: &Path,
        genesis_hash: Hash,
        cache_capacity_bytes: u64,
    ) -> Result<Storage, StorageError> {
        let io_error = |doing, source| StorageError::Io {
            dir: dir.to_path_buf(),
            doing,
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io_error("creating the data dir", e))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(layout::LOCK_FILE))
            .map_err(|e| io_error("opening the lock file", e))?;
        // Retried for a bounded time, not only tried once: a process that
        // spawns a child holds, in the child between fork and exec, a copy
        // of every descriptor, our lock's too, so a close and reopen in one
        // process can find the lock held for that moment (seen under load
        // in the storage tests, which spawn children).
        let deadline = Instant::now() + Duration::from_millis(LOCK_WAIT_MS);
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(LOCK_POLL_MS));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(StorageError::Locked {
                        dir: dir.to_path_buf(),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io_error("locking the lock file", e)),
            }
        }
        let db = open_sled(dir, cache_capacity_bytes)?;
        let tree = db
            .open_tree(layout::TREE)
            .map_err(|e| sled_error(dir, "opening the tree", e))?;
        let storage = Storage {
            dir: dir.to_path_buf(),
            tree,
            db,
            summary: Mutex::new(Summary {
                tip: None,
                digest: StateDigest::EMPTY,
            }),
            _lock: lock,
        };
        let summary = storage.check(genesis_hash)?;
        *storage.lock_summary() = summary;
        Ok(storage)
    }

    /// The last stored height, or `None` for a data dir that holds no
    /// genesis state yet.
    pub fn tip(&self) -> Option<Tip> {
        self.lock_summary().tip
    }

    /// Stores the genesis state as height 0, in one batch, then flushes.
    /// Only while the tip is `None`.
    pub fn commit_genesis(&self, state: &State) -> Result<(), StorageError> {
        let mut summary = self.lock_summary();
        if let Some(tip) = summary.tip {
            return Err(StorageError::GenesisStateExists {
                tip_height: tip.height,
            });
        }
        let genesis_hash = self.stored_genesis()?;
        let mut digest = StateDigest::EMPTY;
        let mut batch = sled::Batch::default();
        for (key, value) in state.range(std::ops::Bound::Unbounded) {
            digest.add(key, value);
            batch.insert(layout::state_key(key), value.as_slice());
        }
        let tip = Tip {
            height: 0,
            block_hash: genesis_hash,
            app_hash: state.app_hash(),
        };
        batch.insert(
            &layout::height_key(Prefix::Hash, 0)[..],
            &layout::encode_hashes(&tip.block_hash, &tip.app_hash)[..],
        );
        batch.insert(layout::META_TIP, &TipRecord { tip, digest }.encode()[..]);
        self.apply_and_flush(
            batch,
            &mut summary,
            Summary {
                tip: Some(tip),
                digest,
            },
        )
    }

    /// Stores one decided block: block, certificate, hashes, state writes
    /// and the new tip in one batch, then flushes the Db.
    pub fn commit(&self, record: &CommitRecord) -> Result<(), StorageError> {
        let mut summary = self.lock_summary();
        let Some(tip) = summary.tip else {
            return Err(StorageError::NoGenesisState);
        };
        if record.height <= tip.height {
            return Err(self.already_stored(record)?);
        }
        // Open refuses a tip at u64::MAX, so this does not overflow.
        let expected = tip.height + 1;
        if record.height != expected {
            return Err(StorageError::NotNextHeight {
                given: record.height,
                expected,
            });
        }
        let mut digest = summary.digest;
        let mut batch = sled::Batch::default();
        self.stage_writes(record, &mut batch, &mut digest)?;
        let height = record.height;
        let new_tip = Tip {
            height,
            block_hash: record.block_hash,
            app_hash: record.app_hash,
        };
        batch.insert(&layout::height_key(Prefix::Block, height)[..], record.block);
        batch.insert(
            &layout::height_key(Prefix::Certificate, height)[..],
            record.certificate,
        );
        batch.insert(
            &layout::height_key(Prefix::Hash, height)[..],
            &layout::encode_hashes(&record.block_hash, &record.app_hash)[..],
        );
        if let Some(events) = record.events {
            batch.insert(&layout::height_key(Prefix::Events, height)[..], events);
        }
        batch.insert(
            layout::META_TIP,
            &TipRecord {
                tip: new_tip,
                digest,
            }
            .encode()[..],
        );
        self.apply_and_flush(
            batch,
            &mut summary,
            Summary {
                tip: Some(new_tip),
                digest,
            },
        )
    }

    /// The canonical bytes of the block at `height`, if stored.
    pub fn block(&self, height: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.reader().block(height)
    }

    /// The canonical bytes of the commit certificate at `height`, if stored.
    pub fn certificate(&self, height: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.reader().certificate(height)
    }

    /// The encoded events of `height` (`crate::events::HeightEvents`), if
    /// stored.
    pub fn events(&self, height: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.reader().events(height)
    }

    /// A read-only handle for readers on other tasks or threads (the gRPC
    /// streams): a clone of the sled tree, so reads do not wait for the
    /// node task. It sees each commit whole (one batch) or not at all.
    pub fn reader(&self) -> StorageReader {
        StorageReader {
            dir: self.dir.clone(),
            tree: self.tree.clone(),
        }
    }

    /// The block hash at `height` (the genesis hash at 0), if stored.
    pub fn block_hash(&self, height: u64) -> Result<Option<Hash>, StorageError> {
        Ok(self.hashes(height)?.map(|(block_hash, _)| block_hash))
    }

    /// The app hash after `height` (of the genesis state at 0), if stored.
    pub fn app_hash(&self, height: u64) -> Result<Option<Hash>, StorageError> {
        Ok(self.hashes(height)?.map(|(_, app_hash)| app_hash))
    }

    /// The state as of the tip, checked against the tip's checksum; `None`
    /// while no genesis state is stored (the caller builds it from the
    /// genesis file and stores it with [`Storage::commit_genesis`]).
    pub fn load_state(&self) -> Result<Option<State>, StorageError> {
        // Held while reading: a sled scan is not atomic with a concurrent
        // batch, and a half-applied block would look like damage.
        let summary = self.lock_summary();
        let Some(tip) = summary.tip else {
            return Ok(None);
        };
        let (records, digest) = self.read_state()?;
        if digest != summary.digest {
            return Err(self.damaged(
                "the state records",
                "they do not match the checksum in the tip record".to_string(),
            ));
        }
        Ok(Some(State::from_records(records, tip.app_hash)))
    }

    /// Syncs everything written so far to disk.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.db
            .flush()
            .map_err(|e| self.sled_error("flushing", e))?;
        Ok(())
    }

    /// Flushes, drops the Db, waits (up to [`LOCK_WAIT_MS`]) until
    /// sled has let go of its files, then releases the lock.
    pub fn close(self) -> Result<(), StorageError> {
        self.flush()?;
        let Storage {
            dir,
            tree,
            db,
            summary: _,
            _lock: lock,
        } = self;
        drop(tree);
        drop(db);
        let released = wait_for_sled_release(&dir);
        drop(lock);
        released
    }

    fn lock_summary(&self) -> MutexGuard<'_, Summary> {
        // The summary is replaced whole after a write, never left half
        // updated, so a panic elsewhere while it was held does not spoil it.
        self.summary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn apply_and_flush(
        &self,
        batch: sled::Batch,
        summary: &mut Summary,
        next: Summary,
    ) -> Result<(), StorageError> {
        self.tree
            .apply_batch(batch)
            .map_err(|e| self.sled_error("writing a block", e))?;
        // Applied: readers see it from now on, whether or not the flush
        // succeeds.
        *summary = next;
        self.flush()
    }

    /// Adds a block's state writes to `batch` and to `digest`, reading the
    /// record each write replaces.
    fn stage_writes(
        &self,
        record: &CommitRecord,
        batch: &mut sled::Batch,
        digest: &mut StateDigest,
    ) -> Result<(), StorageError> {
        let mut previous_key: Option<&[u8]> = None;
        for (index, (key, value)) in record.writes.iter().enumerate() {
            // Two writes to one key would both subtract the same replaced
            // record from the checksum.
            if previous_key.is_some_and(|previous| previous >= key.as_slice()) {
                return Err(StorageError::UnorderedWrites {
                    height: record.height,
                    index,
                });
            }
            previous_key = Some(key);
            let state_key = layout::state_key(key);
            let replaced = self
                .tree
                .get(&state_key)
                .map_err(|e| self.sled_error("reading a state record", e))?;
            if let Some(old) = replaced {
                digest.remove(key, &old);
            }
            match value {
                Some(new) => {
                    digest.add(key, new);
                    batch.insert(state_key, new.as_slice());
                }
                None => batch.remove(state_key),
            }
        }
        Ok(())
    }

    /// Why a commit at a stored height is refused.
    fn already_stored(&self, record: &CommitRecord) -> Result<StorageError, StorageError> {
        let height = record.height;
        let Some((block_hash, app_hash)) = self.hashes(height)? else {
            return Err(self.damaged(
                &layout::describe_key(&layout::height_key(Prefix::Hash, height)),
                "missing below the tip".to_string(),
            ));
        };
        if block_hash != record.block_hash {
            return Ok(StorageError::Conflict {
                height,
                what: "block hash",
                stored: block_hash,
                given: record.block_hash,
            });
        }
        if app_hash != record.app_hash {
            return Ok(StorageError::Conflict {
                height,
                what: "app hash",
                stored: app_hash,
                given: record.app_hash,
            });
        }
        Ok(StorageError::AlreadyCommitted { height, block_hash })
    }

    fn hashes(&self, height: u64) -> Result<Option<(Hash, Hash)>, StorageError> {
        let key = layout::height_key(Prefix::Hash, height);
        let Some(bytes) = self.get(&key, "reading a hash record")? else {
            return Ok(None);
        };
        let hashes = layout::decode_hashes(&bytes)
            .map_err(|problem| self.damaged(&layout::describe_key(&key), problem))?;
        Ok(Some(hashes))
    }

    fn get(&self, key: &[u8], doing: &'static str) -> Result<Option<Vec<u8>>, StorageError> {
        let value = self.tree.get(key).map_err(|e| self.sled_error(doing, e))?;
        Ok(value.map(|bytes| bytes.to_vec()))
    }

    fn stored_genesis(&self) -> Result<Hash, StorageError> {
        let Some(bytes) = self.get(layout::META_GENESIS, "reading the genesis hash")? else {
            return Err(self.damaged(
                &layout::describe_key(layout::META_GENESIS),
                "missing".to_string(),
            ));
        };
        layout::decode_hash(&bytes)
            .map_err(|problem| self.damaged(&layout::describe_key(layout::META_GENESIS), problem))
    }

    /// Every state record, with their checksum.
    fn read_state(&self) -> Result<(Records, StateDigest), StorageError> {
        let mut records = BTreeMap::new();
        let mut digest = StateDigest::EMPTY;
        for entry in self.tree.scan_prefix([Prefix::State as u8]) {
            let (key, value) = entry.map_err(|e| self.sled_error("reading the state", e))?;
            let app_key = key[1..].to_vec();
            digest.add(&app_key, &value);
            records.insert(app_key, value.to_vec());
        }
        Ok((records, digest))
    }

    /// The open-time checks of the module doc; returns the summary to cache.
    fn check(&self, genesis_hash: Hash) -> Result<Summary, StorageError> {
        let format = self.get(layout::META_FORMAT, "reading the format version")?;
        let Some(format) = format else {
            return self.initialise(genesis_hash);
        };
        let found = layout::decode_u32(&format)
            .map_err(|problem| self.damaged(&layout::describe_key(layout::META_FORMAT), problem))?;
        if found != layout::FORMAT_VERSION {
            return Err(StorageError::UnsupportedFormat {
                dir: self.dir.clone(),
                found,
                supported: layout::FORMAT_VERSION,
            });
        }
        let stored = self.stored_genesis()?;
        if stored != genesis_hash {
            return Err(StorageError::WrongGenesis {
                dir: self.dir.clone(),
                stored,
                given: genesis_hash,
            });
        }
        let tip_record = match self.get(layout::META_TIP, "reading the tip")? {
            None => None,
            Some(bytes) => Some(TipRecord::decode(&bytes).map_err(|problem| {
                self.damaged(&layout::describe_key(layout::META_TIP), problem)
            })?),
        };
        match &tip_record {
            None => self.check_no_blocks()?,
            Some(record) => self.check_tip(&record.tip, stored)?,
        }
        let expected = tip_record.map_or(StateDigest::EMPTY, |record| record.digest);
        let (_, digest) = self.read_state()?;
        if digest != expected {
            return Err(self.damaged(
                "the state records",
                format!(
                    "{} records with checksum {}, but the tip record says {} records with checksum {}",
                    digest.count,
                    hex(&digest.sum),
                    expected.count,
                    hex(&expected.sum)
                ),
            ));
        }
        Ok(Summary {
            tip: tip_record.map(|record| record.tip),
            digest,
        })
    }

    /// A data dir with no format record must be empty: record the format
    /// and the genesis hash.
    fn initialise(&self, genesis_hash: Hash) -> Result<Summary, StorageError> {
        if let Some(entry) = self.tree.iter().next() {
            let (key, _) = entry.map_err(|e| self.sled_error("reading the tree", e))?;
            return Err(self.damaged(
                &layout::describe_key(layout::META_FORMAT),
                format!(
                    "missing, but the tree holds data ({})",
                    layout::describe_key(&key)
                ),
            ));
        }
        let mut batch = sled::Batch::default();
        batch.insert(
            layout::META_FORMAT,
            &layout::FORMAT_VERSION.to_be_bytes()[..],
        );
        batch.insert(layout::META_GENESIS, &genesis_hash.0[..]);
        self.tree
            .apply_batch(batch)
            .map_err(|e| self.sled_error("initialising the data dir", e))?;
        self.flush()?;
        Ok(Summary {
            tip: None,
            digest: StateDigest::EMPTY,
        })
    }

    fn check_no_blocks(&self) -> Result<(), StorageError> {
        for prefix in [
            Prefix::Block,
            Prefix::Certificate,
            Prefix::Hash,
            Prefix::State,
        ] {
            if let Some(entry) = self.tree.scan_prefix([prefix as u8]).next() {
                let (key, _) = entry.map_err(|e| self.sled_error("reading the tree", e))?;
                return Err(self.damaged(
                    &layout::describe_key(&key),
                    "present, but there is no tip record".to_string(),
                ));
            }
        }
        Ok(())
    }

    fn check_tip(&self, tip: &Tip, genesis_hash: Hash) -> Result<(), StorageError> {
        if tip.height == u64::MAX {
            return Err(self.damaged(
                &layout::describe_key(layout::META_TIP),
                "height u64::MAX leaves no next height".to_string(),
            ));
        }
        let hash_key = layout::height_key(Prefix::Hash, tip.height);
        let Some((block_hash, app_hash)) = self.hashes(tip.height)? else {
            return Err(self.damaged(
                &layout::describe_key(&hash_key),
                "missing at the tip".to_string(),
            ));
        };
        if block_hash != tip.block_hash || app_hash != tip.app_hash {
            return Err(self.damaged(
                &layout::describe_key(&hash_key),
                format!(
                    "block {block_hash} app {app_hash}, but the tip record says block {} app {}",
                    tip.block_hash, tip.app_hash
                ),
            ));
        }
        if tip.height == 0 && tip.block_hash != genesis_hash {
            return Err(self.damaged(
                &layout::describe_key(layout::META_TIP),
                format!(
                    "height 0 names block {}, not the genesis hash",
                    tip.block_hash
                ),
            ));
        }
        self.check_last_height(Prefix::Hash, Some(tip.height))?;
        // Height 0 (the genesis state) has no block and no certificate.
        let last_block = (tip.height > 0).then_some(tip.height);
        self.check_last_height(Prefix::Block, last_block)?;
        self.check_last_height(Prefix::Certificate, last_block)
    }

    /// The highest key under `prefix` must be for `expected` (or there must
    /// be none): the tip's record exists and nothing lies beyond it.
    fn check_last_height(&self, prefix: Prefix, expected: Option<u64>) -> Result<(), StorageError> {
        let last = match self.tree.scan_prefix([prefix as u8]).next_back() {
            None => None,
            Some(entry) => {
                let (key, _) = entry.map_err(|e| self.sled_error("reading the tree", e))?;
                let height = layout::decode_height_key(&key)
                    .map_err(|problem| self.damaged(&layout::describe_key(&key), problem))?;
                Some(height)
            }
        };
        if last == expected {
            return Ok(());
        }
        let (at, problem) = match (last, expected) {
            (Some(last), Some(tip)) if last > tip => (
                layout::height_key(prefix, last),
                format!("present beyond the tip (height {tip})"),
            ),
            (Some(last), None) => (
                layout::height_key(prefix, last),
                "present, but the tip has none".to_string(),
            ),
            (_, Some(tip)) => (
                layout::height_key(prefix, tip),
                "missing at the tip".to_string(),
            ),
            (None, None) => unreachable!("equal, returned above"),
        };
        Err(self.damaged(&layout::describe_key(&at), problem))
    }

    fn damaged(&self, at: &str, problem: String) -> StorageError {
        StorageError::Damaged {
            dir: self.dir.clone(),
            at: at.to_string(),
            problem,
        }
    }

    fn sled_error(&self, doing: &'static str, error: sled::Error) -> StorageError {
        sled_error(&self.dir, doing, error)
    }
}

/// Reads blocks, certificates and events of an open [`Storage`] from
/// another task; cheap to clone. It cannot write. Holding one keeps sled's
/// tree alive, so drop readers before closing the storage (the gRPC server
/// is stopped before the node closes its storage).
#[derive(Clone)]
pub struct StorageReader {
    dir: PathBuf,
    tree: sled::Tree,
}

impl std::fmt::Debug for StorageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageReader")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl StorageReader {
    /// The last stored height (None: no genesis state yet), read from the
    /// tip record.
    pub fn tip_height(&self) -> Result<Option<u64>, StorageError> {
        let Some(bytes) = self.get(layout::META_TIP, "reading the tip")? else {
            return Ok(None);
        };
        let record = TipRecord::decode(&bytes).map_err(|problem| StorageError::Damaged {
            dir: self.dir.clone(),
            at: layout::describe_key(layout::META_TIP),
            problem,
        })?;
        Ok(Some(record.tip.height))
    }

    /// The canonical bytes of the block at `height`, if stored.
    pub fn block(&self, height: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.get(
            &layout::height_key(Prefix::Block, height),
            "reading a block",
        )
    }

    /// The canonical bytes of the commit certificate at `height`, if stored.
    pub fn certificate(&self, height: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.get(
            &layout::height_key(Prefix::Certificate, height),
            "reading a certificate",
        )
    }

    /// The encoded events of `height` (`crate::events::HeightEvents`), if
    /// stored.
    pub fn events(&self, height: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.get(
            &layout::height_key(Prefix::Events, height),
            "reading events",
        )
    }

    /// The block hash at `height`, if stored.
    pub fn block_hash(&self, height: u64) -> Result<Option<Hash>, StorageError> {
        let key = layout::height_key(Prefix::Hash, height);
        let Some(bytes) = self.get(&key, "reading a hash record")? else {
            return Ok(None);
        };
        let (block_hash, _) =
            layout::decode_hashes(&bytes).map_err(|problem| StorageError::Damaged {
                dir: self.dir.clone(),
                at: layout::describe_key(&key),
                problem,
            })?;
        Ok(Some(block_hash))
    }

    fn get(&self, key: &[u8], doing: &'static str) -> Result<Option<Vec<u8>>, StorageError> {
        let value = self
            .tree
            .get(key)
            .map_err(|e| sled_error(&self.dir, doing, e))?;
        Ok(value.map(|bytes| bytes.to_vec()))
    }
}

/// Opens sled, retrying its lock error for a bounded time: we hold our own
/// lock, so the holder is most likely a Db of this process just dropped.
fn open_sled(dir: &Path, cache_capacity_bytes: u64) -> Result<sled::Db, StorageError> {
    let config = sled::Config::new()
        .path(dir.join(layout::SLED_DIR))
        .cache_capacity(cache_capacity_bytes);
    let deadline = Instant::now() + Duration::from_millis(LOCK_WAIT_MS);
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e) => match sled_error(dir, "opening sled", e) {
                StorageError::Locked { .. } if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(LOCK_POLL_MS));
                }
                error => return Err(error),
            },
        }
    }
}

/// Waits until sled's `db` file can be locked, that is until sled has
/// closed it, and unlocks it again.
fn wait_for_sled_release(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(layout::SLED_DIR).join(layout::SLED_DB_FILE);
    let io_error = |source| StorageError::Io {
        dir: dir.to_path_buf(),
        doing: "waiting for sled to close its files",
        source,
    };
    let file = File::open(&path).map_err(io_error)?;
    let deadline = Instant::now() + Duration::from_millis(LOCK_WAIT_MS);
    loop {
        match file.try_lock() {
            // Dropping the file releases the lock.
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(LOCK_POLL_MS));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(io_error(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "sled still holds {} after {LOCK_WAIT_MS} ms",
                        path.display()
                    ),
                )));
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
    }
}

/// Maps a sled error to ours: corruption is damage, sled's own lock failure
/// is `Locked`, I/O stays I/O.
fn sled_error(dir: &Path, doing: &'static str, error: sled::Error) -> StorageError {
    match error {
        sled::Error::Io(source)
            if source.kind() == io::ErrorKind::Other
                && source.to_string().starts_with("could not acquire lock") =>
        {
            StorageError::Locked {
                dir: dir.to_path_buf(),
            }
        }
        sled::Error::Io(source) => StorageError::Io {
            dir: dir.to_path_buf(),
            doing,
            source,
        },
        sled::Error::Corruption { at, .. } => StorageError::Damaged {
            dir: dir.to_path_buf(),
            at: format!("the sled log ({at:?})"),
            problem: format!("sled reported corruption while {doing}"),
        },
        other => StorageError::Sled {
            dir: dir.to_path_buf(),
            doing,
            detail: other.to_string(),
        },
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    Hash(*bytes).to_hex()
}
