//! A second, hand-written implementation of the canonical layout described
//! in docs/ledger-format.md, used to build golden vectors independently of
//! the codec under test, and the reader of the vectors written in that
//! document ([`doc`]).
#![allow(dead_code)]

pub mod doc;

#[derive(Default, Clone)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
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
    /// Two's complement, little-endian, 8 bytes.
    pub fn i64(mut self, v: i64) -> Self {
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
    /// A sequence length (element count), or a map's entry count.
    pub fn len(self, n: usize) -> Self {
        self.u64(n as u64)
    }
    /// `Option::None`.
    pub fn none(self) -> Self {
        self.u8(0)
    }
    /// `Option::Some`: the tag; the value follows.
    pub fn some(self) -> Self {
        self.u8(1)
    }
    /// A sequence of strings.
    pub fn strs(self, items: &[&str]) -> Self {
        items.iter().fold(self.len(items.len()), |b, s| b.str(s))
    }
    /// A variable-length byte sequence (`Vec<u8>`): u64 count, then bytes.
    pub fn byte_seq(self, bytes: &[u8]) -> Self {
        self.len(bytes.len()).raw(bytes)
    }
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.0).as_bytes()
    }
}
