//! The signing-state guard (CometBFT privval style): a validator never signs
//! two different messages for the same height, round and step, nor anything
//! for an earlier one, across crashes. The last signed state is durably
//! stored before a signature is returned.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use symbiont_contracts::codec;

use super::types::{Context, Height, Round, VoteType};

/// The step a signature belongs to, in signing order within a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SignStep {
    Proposal,
    Prevote,
    Precommit,
}

impl From<VoteType> for SignStep {
    fn from(vote_type: VoteType) -> Self {
        match vote_type {
            VoteType::Prevote => SignStep::Prevote,
            VoteType::Precommit => SignStep::Precommit,
        }
    }
}

/// The last thing signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SignState<C: Context> {
    pub height: Height,
    pub round: Round,
    pub step: SignStep,
    /// blake3 of the sign bytes.
    pub sign_bytes_hash: [u8; 32],
    pub signature: C::Signature,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sign-state storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("sign-state file is corrupt: {0}")]
    Corrupt(String),
    #[error("sign-state storage failed: {0}")]
    Failed(String),
}

/// Durable storage of the last sign state. `save` returns only once the
/// state is durable; a failure to persist must stop the validator.
pub trait SignStateStore<C: Context>: Send {
    fn load(&mut self) -> Result<Option<SignState<C>>, StoreError>;
    fn save(&mut self, state: &SignState<C>) -> Result<(), StoreError>;
}

/// Produces signatures with the validator's key.
pub trait Signer<C: Context>: Send {
    fn address(&self) -> C::Address;
    fn sign(&self, message: &[u8]) -> C::Signature;
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("refusing to sign: different bytes already signed at {height}/{round}/{step:?}")]
    Conflict {
        height: Height,
        round: Round,
        step: SignStep,
    },
    #[error("refusing to sign {height}/{round}/{step:?}: already signed a later step")]
    Regression {
        height: Height,
        round: Round,
        step: SignStep,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SignError {
    /// A refusal is normal after a crash (the core may re-derive a message
    /// it must not send); a storage error is fatal.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, SignError::Store(_))
    }
}

/// Signs only what does not conflict with what was signed before.
pub struct SignGuard<C: Context> {
    signer: Box<dyn Signer<C>>,
    store: Box<dyn SignStateStore<C>>,
    last: Option<SignState<C>>,
}

impl<C: Context> SignGuard<C> {
    /// Loads the last state from `store`.
    pub fn open(
        signer: Box<dyn Signer<C>>,
        mut store: Box<dyn SignStateStore<C>>,
    ) -> Result<Self, StoreError> {
        let last = store.load()?;
        Ok(Self {
            signer,
            store,
            last,
        })
    }

    pub fn address(&self) -> C::Address {
        self.signer.address()
    }

    pub fn last(&self) -> Option<&SignState<C>> {
        self.last.as_ref()
    }

    /// Signs `sign_bytes` for (`height`, `round`, `step`), persisting the
    /// new state before returning the signature. The same bytes at the same
    /// step return the stored signature.
    pub fn sign(
        &mut self,
        height: Height,
        round: Round,
        step: SignStep,
        sign_bytes: &[u8],
    ) -> Result<C::Signature, SignError> {
        match self.prepare(height, round, step, sign_bytes)? {
            Prepared::Existing(signature) => Ok(signature),
            Prepared::New(state) => {
                let signature = state.signature.clone();
                self.commit(state)?;
                Ok(signature)
            }
        }
    }

    /// The checks of `sign`, and the signature, without persisting: the
    /// caller records the signed message durably elsewhere first (the WAL),
    /// then calls `commit` before the signature leaves the process.
    pub fn prepare(
        &self,
        height: Height,
        round: Round,
        step: SignStep,
        sign_bytes: &[u8],
    ) -> Result<Prepared<C>, SignError> {
        let sign_bytes_hash = *blake3::hash(sign_bytes).as_bytes();
        if let Some(last) = &self.last {
            match (height, round, step).cmp(&(last.height, last.round, last.step)) {
                std::cmp::Ordering::Less => {
                    return Err(SignError::Regression {
                        height,
                        round,
                        step,
                    });
                }
                std::cmp::Ordering::Equal => {
                    return if last.sign_bytes_hash == sign_bytes_hash {
                        Ok(Prepared::Existing(last.signature.clone()))
                    } else {
                        Err(SignError::Conflict {
                            height,
                            round,
                            step,
                        })
                    };
                }
                std::cmp::Ordering::Greater => {}
            }
        }
        Ok(Prepared::New(SignState {
            height,
            round,
            step,
            sign_bytes_hash,
            signature: self.signer.sign(sign_bytes),
        }))
    }

    /// Durably records a state from `prepare`.
    pub fn commit(&mut self, state: SignState<C>) -> Result<(), StoreError> {
        if let Some(last) = &self.last {
            assert!(
                (state.height, state.round, state.step) > (last.height, last.round, last.step),
                "sign state must move forward"
            );
        }
        self.store.save(&state)?;
        self.last = Some(state);
        Ok(())
    }
}

/// What `prepare` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prepared<C: Context> {
    /// Already signed these bytes at this step: the stored signature.
    Existing(C::Signature),
    /// A new signature, to be committed before it is used.
    New(SignState<C>),
}

/// In-memory store (tests; the simulator has its own crash-aware one).
pub struct MemoryStore<C: Context> {
    pub state: Option<SignState<C>>,
}

impl<C: Context> SignStateStore<C> for MemoryStore<C> {
    fn load(&mut self) -> Result<Option<SignState<C>>, StoreError> {
        Ok(self.state.clone())
    }
    fn save(&mut self, state: &SignState<C>) -> Result<(), StoreError> {
        self.state = Some(state.clone());
        Ok(())
    }
}

/// A file holding the canonical encoding of the state and its blake3 hash,
/// replaced atomically: write a temporary file, fsync it, rename it over the
/// old one, fsync the directory. A crash leaves the old or the new state.
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    fn temp_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        self.path.with_file_name(name)
    }
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomically(path: &Path, temp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    {
        let mut file = File::create(temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(temp, path)?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl<C: Context> SignStateStore<C> for FileStore {
    fn load(&mut self) -> Result<Option<SignState<C>>, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (state_bytes, hash): (Vec<u8>, [u8; 32]) =
            codec::decode(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if *blake3::hash(&state_bytes).as_bytes() != hash {
            return Err(StoreError::Corrupt("checksum mismatch".into()));
        }
        let state = codec::decode(&state_bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some(state))
    }

    fn save(&mut self, state: &SignState<C>) -> Result<(), StoreError> {
        let state_bytes = codec::encode(state);
        let hash = *blake3::hash(&state_bytes).as_bytes();
        let bytes = codec::encode(&(state_bytes, hash));
        write_atomically(&self.path, &self.temp_path(), &bytes)?;
        // Pair assertion: read back what was written.
        let read_back: Option<SignState<C>> = self.load()?;
        assert_eq!(
            read_back.as_ref(),
            Some(state),
            "sign state read back differs"
        );
        Ok(())
    }
}
