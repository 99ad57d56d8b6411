//! The export file: a ledger in one self-contained, streamable file (the
//! genesis, then every block with its commit certificate and the results
//! the node stored), framed and checksummed, for `symbiont audit` and for
//! anyone's own verifier. The layout is docs/export-format.md; the golden
//! vector in `tests/export_format.rs` pins it and the document quotes it.
//!
//! ```text
//! file   = magic "SYMB-EXP" | version u32 LE (= 1) | genesis-frame | block-frame* | end-frame
//! frame  = kind u8 | length u32 LE | payload (length bytes) | blake3(kind | length | payload) (32 bytes)
//! ```
//!
//! A reader checks each frame's checksum before it looks at the payload,
//! refuses a length above [`MAX_FRAME_BYTES`] before allocating, and tells
//! a file cut short (EOF inside a frame, or at a frame boundary before the
//! end frame) from a damaged one. Nothing here panics on a malformed file.
//!
//! Pure: any `Read`/`Write`, no network, no storage.

use std::io::{self, Read, Write};

use symbiont_contracts::hash::Hash;

/// The first 8 bytes of every export file.
pub const MAGIC: [u8; 8] = *b"SYMB-EXP";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the file header: magic and version.
pub const HEADER_BYTES: u64 = 12;
/// A frame's payload is at most this long (a block is at most
/// `MAX_BLOCK_BYTES`, far below): a larger length is refused before any
/// allocation.
pub const MAX_FRAME_BYTES: u32 = 64 << 20;
/// kind (1) + length (4) before the payload, checksum (32) after it.
pub const FRAME_OVERHEAD_BYTES: u64 = 1 + 4 + 32;
/// A result code is at most this many bytes.
pub const MAX_RESULT_BYTES: usize = 256;

/// Frame kinds.
pub const KIND_GENESIS: u8 = 1;
pub const KIND_BLOCK: u8 = 2;
pub const KIND_END: u8 = 3;

/// One block as exported: its canonical bytes, its commit certificate's
/// canonical bytes (docs/ledger-format.md, section 7) and the result the
/// node stored for each of its transactions ("" applied, else the code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockFrame {
    pub height: u64,
    pub block: Vec<u8>,
    pub certificate: Vec<u8>,
    pub results: Vec<String>,
}

/// The end frame: the last block's height and hash (0 and the genesis
/// hash for an export without blocks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndFrame {
    pub height: u64,
    pub block_hash: Hash,
}

/// What follows the genesis frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Block(BlockFrame),
    End(EndFrame),
}

/// Why a file is not a readable export. `offset` is the byte offset of
/// the frame (or field) concerned, from the start of the file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("not a Symbiont export file: it does not start with \"SYMB-EXP\"")]
    BadMagic,
    #[error("export format version {found}; this build reads version {VERSION}")]
    UnsupportedVersion { found: u32 },
    #[error("the file is cut short at byte {offset}: {what}")]
    Truncated { offset: u64, what: String },
    #[error(
        "frame at byte {offset} declares {length} bytes, more than the limit {MAX_FRAME_BYTES}"
    )]
    FrameTooLarge { offset: u64, length: u32 },
    #[error("frame at byte {offset} (kind {kind}) fails its checksum: the file is damaged")]
    BadChecksum { offset: u64, kind: u8 },
    #[error("frame at byte {offset} has unknown kind {kind}")]
    UnknownKind { offset: u64, kind: u8 },
    #[error("frame at byte {offset}: expected {expected}, found {found}")]
    UnexpectedFrame {
        offset: u64,
        expected: &'static str,
        found: &'static str,
    },
    #[error("frame at byte {offset} is malformed: {what}")]
    Malformed { offset: u64, what: String },
    #[error("{count} bytes follow the end frame at byte {offset}")]
    TrailingBytes { offset: u64, count: u64 },
    #[error("cannot read the export: {0}")]
    Io(#[from] io::Error),
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_GENESIS => "the genesis frame",
        KIND_BLOCK => "a block frame",
        KIND_END => "the end frame",
        _ => "an unknown frame",
    }
}

/// The checksum of a frame: BLAKE3 of kind, length and payload.
pub fn frame_checksum(kind: u8, payload: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(&(payload.len() as u32).to_le_bytes());
    hasher.update(payload);
    Hash(*hasher.finalize().as_bytes())
}

/// The bytes of one frame.
pub fn encode_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= MAX_FRAME_BYTES as usize, "frame too large");
    let mut out = Vec::with_capacity(payload.len() + FRAME_OVERHEAD_BYTES as usize);
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&frame_checksum(kind, payload).0);
    out
}

/// The file header: magic and version.
pub fn header() -> [u8; HEADER_BYTES as usize] {
    let mut out = [0u8; HEADER_BYTES as usize];
    out[..8].copy_from_slice(&MAGIC);
    out[8..].copy_from_slice(&VERSION.to_le_bytes());
    out
}

impl BlockFrame {
    /// The payload: height u64, block (u32 length + bytes), certificate
    /// (u32 length + bytes), results (u32 count, each u16 length + UTF-8).
    pub fn payload(&self) -> Vec<u8> {
        let results_bytes: usize = self.results.iter().map(|r| 2 + r.len()).sum();
        let mut out = Vec::with_capacity(
            8 + 4 + self.block.len() + 4 + self.certificate.len() + 4 + results_bytes,
        );
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&(self.block.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.block);
        out.extend_from_slice(&(self.certificate.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.certificate);
        out.extend_from_slice(&(self.results.len() as u32).to_le_bytes());
        for result in &self.results {
            assert!(result.len() <= MAX_RESULT_BYTES, "result code too long");
            out.extend_from_slice(&(result.len() as u16).to_le_bytes());
            out.extend_from_slice(result.as_bytes());
        }
        out
    }

    /// Decodes a block frame's payload (`offset`: the frame's, for errors).
    pub fn decode(payload: &[u8], offset: u64) -> Result<BlockFrame, ExportError> {
        let mut cursor = Cursor {
            bytes: payload,
            offset,
        };
        let height = cursor.u64("height")?;
        let block_len = cursor.u32("block length")? as usize;
        let block = cursor.take(block_len, "block")?.to_vec();
        let certificate_len = cursor.u32("certificate length")? as usize;
        let certificate = cursor.take(certificate_len, "certificate")?.to_vec();
        let count = cursor.u32("result count")? as usize;
        // Each result takes at least 2 bytes: a count the payload cannot
        // hold is refused before allocating.
        if count > cursor.bytes.len() / 2 {
            return Err(cursor.malformed(format!("{count} results do not fit in the frame")));
        }
        let mut results = Vec::with_capacity(count);
        for index in 0..count {
            let len = cursor.u16("result length")? as usize;
            if len > MAX_RESULT_BYTES {
                return Err(cursor.malformed(format!("result {index} is {len} bytes long")));
            }
            let bytes = cursor.take(len, "result")?;
            let text = std::str::from_utf8(bytes)
                .map_err(|_| cursor.malformed(format!("result {index} is not UTF-8")))?;
            results.push(text.to_string());
        }
        if !cursor.bytes.is_empty() {
            return Err(cursor.malformed(format!("{} bytes after the results", cursor.bytes.len())));
        }
        Ok(BlockFrame {
            height,
            block,
            certificate,
            results,
        })
    }
}

impl EndFrame {
    /// The payload: height u64 LE, block hash (32 bytes).
    pub fn payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.block_hash.0);
        out
    }

    pub fn decode(payload: &[u8], offset: u64) -> Result<EndFrame, ExportError> {
        let mut cursor = Cursor {
            bytes: payload,
            offset,
        };
        let height = cursor.u64("height")?;
        let hash = cursor.take(32, "block hash")?;
        if !cursor.bytes.is_empty() {
            return Err(cursor.malformed("the end frame is longer than 40 bytes".into()));
        }
        Ok(EndFrame {
            height,
            block_hash: Hash(hash.try_into().expect("32 bytes")),
        })
    }
}

/// Reads fields off a payload; every read checks the length first.
struct Cursor<'a> {
    bytes: &'a [u8],
    offset: u64,
}

impl<'a> Cursor<'a> {
    fn malformed(&self, what: String) -> ExportError {
        ExportError::Malformed {
            offset: self.offset,
            what,
        }
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], ExportError> {
        if self.bytes.len() < len {
            return Err(self.malformed(format!(
                "the {what} needs {len} bytes, {} are left",
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn u16(&mut self, what: &str) -> Result<u16, ExportError> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().expect("2"),
        ))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ExportError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ExportError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
}

/// Writes an export: the header and genesis frame at `new`, then blocks in
/// height order, then `finish`.
pub struct ExportWriter<W: Write> {
    out: W,
    /// Bytes written so far (including the header).
    written: u64,
}

impl<W: Write> ExportWriter<W> {
    /// Starts a new file: header and genesis frame (`genesis`: the
    /// canonical genesis bytes).
    pub fn new(mut out: W, genesis: &[u8]) -> io::Result<Self> {
        out.write_all(&header())?;
        let frame = encode_frame(KIND_GENESIS, genesis);
        out.write_all(&frame)?;
        Ok(Self {
            out,
            written: HEADER_BYTES + frame.len() as u64,
        })
    }

    /// Appends to a file whose complete frames end where `out` is
    /// positioned (see [`scan`]).
    pub fn resume(out: W, written: u64) -> Self {
        Self { out, written }
    }

    pub fn block(&mut self, block: &BlockFrame) -> io::Result<()> {
        let frame = encode_frame(KIND_BLOCK, &block.payload());
        self.out.write_all(&frame)?;
        self.written += frame.len() as u64;
        Ok(())
    }

    /// Writes the end frame and returns the output (flushed).
    pub fn finish(mut self, end: EndFrame) -> io::Result<W> {
        let frame = encode_frame(KIND_END, &end.payload());
        self.out.write_all(&frame)?;
        self.written += frame.len() as u64;
        self.out.flush()?;
        Ok(self.out)
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

/// Reads an export frame by frame. [`ExportReader::open`] checks the
/// header and reads the genesis frame; [`ExportReader::next`] gives each
/// block frame, then the end frame, then `None` once it has checked that
/// nothing follows the end frame.
pub struct ExportReader<R: Read> {
    input: R,
    /// Offset of the next frame.
    offset: u64,
    ended: bool,
    done: bool,
}

/// One raw frame: kind, payload and the offset it starts at.
struct RawFrame {
    kind: u8,
    payload: Vec<u8>,
    offset: u64,
}

/// Fills `buf` fully; `Ok(false)` if the input ended before the first byte.
fn read_exact_or_eof(
    input: &mut impl Read,
    buf: &mut [u8],
    offset: u64,
    what: &str,
) -> Result<bool, ExportError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(ExportError::Truncated {
                    offset: offset + filled as u64,
                    what: format!("inside {what}"),
                });
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

impl<R: Read> ExportReader<R> {
    /// Checks magic and version and reads the genesis frame: returns the
    /// reader and the canonical genesis bytes.
    pub fn open(mut input: R) -> Result<(Self, Vec<u8>), ExportError> {
        let mut header = [0u8; HEADER_BYTES as usize];
        if !read_exact_or_eof(&mut input, &mut header, 0, "the file header")? {
            return Err(ExportError::Truncated {
                offset: 0,
                what: "the file is empty".into(),
            });
        }
        if header[..8] != MAGIC {
            return Err(ExportError::BadMagic);
        }
        let version = u32::from_le_bytes(header[8..].try_into().expect("4"));
        if version != VERSION {
            return Err(ExportError::UnsupportedVersion { found: version });
        }
        let mut reader = Self {
            input,
            offset: HEADER_BYTES,
            ended: false,
            done: false,
        };
        let Some(frame) = reader.raw()? else {
            return Err(ExportError::Truncated {
                offset: HEADER_BYTES,
                what: "no genesis frame follows the header".into(),
            });
        };
        if frame.kind != KIND_GENESIS {
            return Err(ExportError::UnexpectedFrame {
                offset: frame.offset,
                expected: kind_name(KIND_GENESIS),
                found: kind_name(frame.kind),
            });
        }
        Ok((reader, frame.payload))
    }

    /// Offset of the next frame: after the last complete frame read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn raw(&mut self) -> Result<Option<RawFrame>, ExportError> {
        let offset = self.offset;
        let mut head = [0u8; 5];
        if !read_exact_or_eof(&mut self.input, &mut head, offset, "a frame header")? {
            return Ok(None);
        }
        let kind = head[0];
        let length = u32::from_le_bytes(head[1..].try_into().expect("4"));
        if !(KIND_GENESIS..=KIND_END).contains(&kind) {
            return Err(ExportError::UnknownKind { offset, kind });
        }
        if length > MAX_FRAME_BYTES {
            return Err(ExportError::FrameTooLarge { offset, length });
        }
        let mut payload = vec![0u8; length as usize];
        let what = kind_name(kind);
        if !read_exact_or_eof(&mut self.input, &mut payload, offset + 5, what)? && length > 0 {
            return Err(ExportError::Truncated {
                offset: offset + 5,
                what: format!("inside {what}"),
            });
        }
        let mut checksum = [0u8; 32];
        if !read_exact_or_eof(
            &mut self.input,
            &mut checksum,
            offset + 5 + u64::from(length),
            "a frame checksum",
        )? {
            return Err(ExportError::Truncated {
                offset: offset + 5 + u64::from(length),
                what: format!("{what} has no checksum"),
            });
        }
        if frame_checksum(kind, &payload).0 != checksum {
            return Err(ExportError::BadChecksum { offset, kind });
        }
        self.offset += FRAME_OVERHEAD_BYTES + u64::from(length);
        Ok(Some(RawFrame {
            kind,
            payload,
            offset,
        }))
    }

    /// The next frame after the genesis: a block, the end, or `None` after
    /// the end (checked to be the last bytes of the file).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ExportError> {
        if self.done {
            return Ok(None);
        }
        if self.ended {
            let offset = self.offset;
            let mut rest = Vec::new();
            let count = (&mut self.input).take(1 << 20).read_to_end(&mut rest)? as u64;
            if count > 0 {
                return Err(ExportError::TrailingBytes { offset, count });
            }
            self.done = true;
            return Ok(None);
        }
        let Some(frame) = self.raw()? else {
            return Err(ExportError::Truncated {
                offset: self.offset,
                what: "the file ends without its end frame (an interrupted export?)".into(),
            });
        };
        match frame.kind {
            KIND_BLOCK => Ok(Some(Frame::Block(BlockFrame::decode(
                &frame.payload,
                frame.offset,
            )?))),
            KIND_END => {
                self.ended = true;
                Ok(Some(Frame::End(EndFrame::decode(
                    &frame.payload,
                    frame.offset,
                )?)))
            }
            kind => Err(ExportError::UnexpectedFrame {
                offset: frame.offset,
                expected: "a block frame or the end frame",
                found: kind_name(kind),
            }),
        }
    }
}

/// What a partial export holds: the genesis, the block frames that are
/// complete and sound, and where they end.
#[derive(Clone, Debug)]
pub struct Partial {
    pub genesis: Vec<u8>,
    /// Height of the last complete block frame (0: none).
    pub last_height: u64,
    /// Bytes up to the end of that frame: keep these, append after.
    pub valid_bytes: u64,
    /// Whether the file already holds its end frame.
    pub complete: bool,
    /// The canonical bytes of the last complete block (None: none).
    pub last_block: Option<Vec<u8>>,
}

/// Scans a partial export for resuming: the header and genesis frame must
/// be sound (else the error), then block frames are read until the first
/// that is cut short or damaged; the heights must run 1, 2, 3, ... .
pub fn scan(input: impl Read) -> Result<Partial, ExportError> {
    let (mut reader, genesis) = ExportReader::open(input)?;
    let mut partial = Partial {
        genesis,
        last_height: 0,
        valid_bytes: reader.offset(),
        complete: false,
        last_block: None,
    };
    loop {
        match reader.next_frame() {
            Ok(Some(Frame::Block(block))) => {
                if block.height != partial.last_height + 1 {
                    return Err(ExportError::Malformed {
                        offset: partial.valid_bytes,
                        what: format!(
                            "block frame of height {} after height {}",
                            block.height, partial.last_height
                        ),
                    });
                }
                partial.last_height = block.height;
                partial.valid_bytes = reader.offset();
                partial.last_block = Some(block.block);
            }
            Ok(Some(Frame::End(_))) => {
                partial.complete = true;
                return Ok(partial);
            }
            Ok(None) => return Ok(partial),
            Err(ExportError::Io(e)) => return Err(ExportError::Io(e)),
            // The first frame that is not sound ends what can be kept.
            Err(_) => return Ok(partial),
        }
    }
}
