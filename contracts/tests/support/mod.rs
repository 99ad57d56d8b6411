//! A second, hand-written implementation of the canonical layout described
//! in docs/ledger-format.md, used to build golden vectors independently of
//! the codec under test.
#![allow(dead_code)]

#[derive(Default)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bool(self, v: bool) -> Self {
        self.u8(v as u8)
    }
    /// A string: u64 byte length, then UTF-8 bytes.
    pub fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    /// Fixed-size bytes (keys, hashes, signatures): no length prefix.
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    /// An enum variant index.
    pub fn variant(self, index: u32) -> Self {
        self.u32(index)
    }
    /// A sequence length.
    pub fn len(self, n: usize) -> Self {
        self.u64(n as u64)
    }
}
