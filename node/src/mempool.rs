//! The mempool: transactions admitted but not yet in a block.
//!
//! Admission checks what a block would (size, chain id, strict signature,
//! a signer that is a key of a member firm, nonce) before a transaction is
//! gossiped, so a peer cannot make us forward what no block can hold, and
//! remembers the transaction as verified: execution need not check its
//! signature again. Bounded by count, by bytes and per signer; deduplicated
//! by tx id.
//!
//! Nonces (as go-ethereum's pool): per signer, the transactions whose
//! nonces run on without a gap from the state's are *pending* and may be
//! proposed; those after a gap wait, at most `future_nonce_window` ahead of
//! the state's nonce. After each block `update` drops what was committed
//! or went stale and checks the rest again against the new state.
//! `reap` proposes pending transactions in arrival order, each signer's in
//! nonce order, within the block limits.
//!
//! Pure: no clock, no I/O; iteration is over sorted maps only.

use std::collections::{BTreeMap, BTreeSet};

use symbiont_contracts::exec::actor_of;
use symbiont_contracts::hash::Hash;
use symbiont_contracts::keys::PublicKey;
use symbiont_contracts::state::{Key, State};
use symbiont_contracts::tx::{SignedTx, TxError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    pub max_txs: usize,
    pub max_bytes: usize,
    /// Transactions one signer may have waiting.
    pub max_per_signer: usize,
    /// How far beyond the state's nonce a waiting nonce may be.
    pub future_nonce_window: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            max_txs: 5000,
            max_bytes: 64 * 1024 * 1024,
            max_per_signer: 64,
            future_nonce_window: 16,
        }
    }
}

/// Why a transaction was not admitted. Nothing changes in the pool.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error("transaction {0} is already waiting")]
    Duplicate(Hash),
    #[error("transaction {0} is already in a block")]
    AlreadyCommitted(Hash),
    #[error("signer {0} is not a key of a member firm")]
    UnknownSigner(PublicKey),
    #[error("nonce {got} of {signer} is used already: the next is {next}")]
    NonceTooLow {
        signer: PublicKey,
        next: u64,
        got: u64,
    },
    #[error("nonce {got} of {signer} is too far ahead: at most {max} waits (the next is {next})")]
    NonceTooFarAhead {
        signer: PublicKey,
        next: u64,
        max: u64,
        got: u64,
    },
    #[error("another transaction of {signer} with nonce {nonce} is waiting")]
    NonceTaken { signer: PublicKey, nonce: u64 },
    #[error("{signer} has {max} transactions waiting, the most allowed")]
    SignerFull { signer: PublicKey, max: usize },
    #[error("the mempool is full ({txs} transactions, {bytes} bytes)")]
    Full { txs: usize, bytes: usize },
}

impl AdmitError {
    /// A stable code for the gRPC API and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AdmitError::Tx(e) => e.code(),
            AdmitError::Duplicate(_) => "duplicate",
            AdmitError::AlreadyCommitted(_) => "already_included",
            AdmitError::UnknownSigner(_) => "unknown_signer",
            AdmitError::NonceTooLow { .. } => "bad_nonce",
            AdmitError::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
            AdmitError::NonceTaken { .. } => "nonce_taken",
            AdmitError::SignerFull { .. } => "signer_full",
            AdmitError::Full { .. } => "mempool_full",
        }
    }
}

struct Entry {
    tx: SignedTx,
    bytes: usize,
    /// Arrival order, for fair and deterministic reaping.
    arrival: u64,
}

pub struct Mempool {
    config: MempoolConfig,
    chain_id: String,
    by_id: BTreeMap<Hash, Entry>,
    /// Per signer: nonce -> tx id.
    by_signer: BTreeMap<PublicKey, BTreeMap<u64, Hash>>,
    total_bytes: usize,
    next_arrival: u64,
}

/// The nonce a signer's next transaction must carry.
pub fn next_nonce(state: &State, signer: &PublicKey) -> u64 {
    let last: Option<u64> = state.get(&Key::Nonce(*signer));
    last.map_or(1, |n| n.saturating_add(1))
}

impl Mempool {
    pub fn new(chain_id: impl Into<String>, config: MempoolConfig) -> Self {
        Self {
            config,
            chain_id: chain_id.into(),
            by_id: BTreeMap::new(),
            by_signer: BTreeMap::new(),
            total_bytes: 0,
            next_arrival: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.total_bytes
    }

    pub fn contains(&self, id: &Hash) -> bool {
        self.by_id.contains_key(id)
    }

    /// Admitted, so its signature was verified (strictly) here.
    pub fn get(&self, id: &Hash) -> Option<&SignedTx> {
        self.by_id.get(id).map(|e| &e.tx)
    }

    /// How many of `signer`'s transactions wait here, and the first nonce
    /// from the state's next one that none of them holds: what the
    /// signer's next transaction submitted here should carry.
    pub fn signer_nonces(&self, state: &State, signer: &PublicKey) -> (usize, u64) {
        let mut free = next_nonce(state, signer);
        let Some(waiting) = self.by_signer.get(signer) else {
            return (0, free);
        };
        for nonce in waiting.range(free..).map(|(nonce, _)| *nonce) {
            if nonce != free {
                break;
            }
            free = free.saturating_add(1);
        }
        (waiting.len(), free)
    }

    /// Checks `tx` against `state` and keeps it. Its id on success; on
    /// failure nothing changed.
    pub fn admit(&mut self, tx: SignedTx, state: &State) -> Result<Hash, AdmitError> {
        let id = tx.id();
        if self.by_id.contains_key(&id) {
            return Err(AdmitError::Duplicate(id));
        }
        if state.contains(&Key::Receipt(id)) {
            return Err(AdmitError::AlreadyCommitted(id));
        }
        let bytes = tx.to_bytes().len();
        // Size and chain id first: cheap, and no signature work for them.
        tx.verify(&self.chain_id)?;
        self.check_signer_and_nonce(&tx, state)?;
        let signer = tx.signer;
        let waiting = self.by_signer.get(&signer).map_or(0, BTreeMap::len);
        if waiting >= self.config.max_per_signer {
            return Err(AdmitError::SignerFull {
                signer,
                max: self.config.max_per_signer,
            });
        }
        if self.by_id.len() >= self.config.max_txs
            || self.total_bytes.saturating_add(bytes) > self.config.max_bytes
        {
            return Err(AdmitError::Full {
                txs: self.by_id.len(),
                bytes: self.total_bytes,
            });
        }
        self.by_signer
            .entry(signer)
            .or_default()
            .insert(tx.body.nonce, id);
        self.by_id.insert(
            id,
            Entry {
                tx,
                bytes,
                arrival: self.next_arrival,
            },
        );
        self.next_arrival += 1;
        self.total_bytes += bytes;
        Ok(id)
    }

    fn check_signer_and_nonce(&self, tx: &SignedTx, state: &State) -> Result<(), AdmitError> {
        let signer = tx.signer;
        actor_of(state, &signer).map_err(|_| AdmitError::UnknownSigner(signer))?;
        let next = next_nonce(state, &signer);
        let nonce = tx.body.nonce;
        if nonce < next {
            return Err(AdmitError::NonceTooLow {
                signer,
                next,
                got: nonce,
            });
        }
        let max = next.saturating_add(self.config.future_nonce_window);
        if nonce > max {
            return Err(AdmitError::NonceTooFarAhead {
                signer,
                next,
                max,
                got: nonce,
            });
        }
        if self
            .by_signer
            .get(&signer)
            .is_some_and(|nonces| nonces.contains_key(&nonce))
        {
            return Err(AdmitError::NonceTaken { signer, nonce });
        }
        Ok(())
    }

    /// Pending transactions for a block, at most `max_txs` and
    /// `max_bytes` (of transaction bytes): in arrival order, each signer's
    /// in nonce order from the state's next nonce, stopping at a gap.
    pub fn reap(&self, state: &State, max_txs: usize, max_bytes: usize) -> Vec<SignedTx> {
        // Each signer's run of consecutive nonces from the state's next.
        let mut runs: BTreeMap<&PublicKey, Vec<&Entry>> = BTreeMap::new();
        for (signer, nonces) in &self.by_signer {
            let mut expected = next_nonce(state, signer);
            let run = runs.entry(signer).or_default();
            for (nonce, id) in nonces {
                if *nonce != expected {
                    break;
                }
                run.push(&self.by_id[id]);
                expected = expected.saturating_add(1);
            }
        }
        // Merge the runs by arrival: always take the earliest-arrived head.
        let mut heads: BTreeSet<(u64, &PublicKey)> = runs
            .iter()
            .filter_map(|(signer, run)| run.first().map(|e| (e.arrival, *signer)))
            .collect();
        let mut taken_in_run: BTreeMap<&PublicKey, usize> = BTreeMap::new();
        let mut block = Vec::new();
        let mut bytes = 0usize;
        while let Some((_, signer)) = heads.pop_first() {
            if block.len() >= max_txs {
                break;
            }
            let index = taken_in_run.entry(signer).or_insert(0);
            let entry = runs[signer][*index];
            if bytes.saturating_add(entry.bytes) > max_bytes {
                // This signer's later nonces cannot go before it: its run
                // ends here; others may still fit.
                continue;
            }
            bytes += entry.bytes;
            block.push(entry.tx.clone());
            *index += 1;
            if let Some(next) = runs[signer].get(*index) {
                heads.insert((next.arrival, signer));
            }
        }
        block
    }

    /// After a block: drops the committed transactions and those whose
    /// nonce the state has passed, and checks the rest again (a signer
    /// whose key was revoked or whose firm left). Returns how many were
    /// dropped.
    pub fn update(&mut self, committed: &[Hash], state: &State) -> usize {
        let before = self.by_id.len();
        for id in committed {
            self.remove(id);
        }
        let stale: Vec<Hash> = self
            .by_id
            .iter()
            .filter(|(id, entry)| {
                let tx = &entry.tx;
                actor_of(state, &tx.signer).is_err()
                    || tx.body.nonce < next_nonce(state, &tx.signer)
                    || state.contains(&Key::Receipt(**id))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &stale {
            self.remove(id);
        }
        before - self.by_id.len()
    }

    fn remove(&mut self, id: &Hash) {
        let Some(entry) = self.by_id.remove(id) else {
            return;
        };
        self.total_bytes -= entry.bytes;
        let signer = entry.tx.signer;
        if let Some(nonces) = self.by_signer.get_mut(&signer) {
            nonces.remove(&entry.tx.body.nonce);
            if nonces.is_empty() {
                self.by_signer.remove(&signer);
            }
        }
    }
}
