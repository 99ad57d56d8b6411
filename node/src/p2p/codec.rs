//! The block-sync wire codec: one length-prefixed frame per request and per
//! response, payloads opaque (ported from malachite code/crates/sync/src/rpc.rs).
//!
//! Frame = `u32` big-endian payload length, then that many payload bytes.
//! The reader checks the length against its maximum *before* allocating or
//! reading the payload, so a peer cannot make us allocate more than the
//! maximum by announcing a large frame.

use std::io;

use libp2p::StreamProtocol;
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Width of the length prefix, in bytes.
pub const LENGTH_PREFIX_BYTES: usize = size_of::<u32>();

/// The request-response codec of the sync protocol; requests and responses
/// are opaque byte strings bounded by their own maxima.
#[derive(Clone, Copy, Debug)]
pub struct SyncCodec {
    max_request_bytes: u32,
    max_response_bytes: u32,
}

impl SyncCodec {
    pub fn new(max_request_bytes: u32, max_response_bytes: u32) -> SyncCodec {
        SyncCodec {
            max_request_bytes,
            max_response_bytes,
        }
    }
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response_bytes).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request, self.max_request_bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response, self.max_response_bytes).await
    }
}

async fn write_frame<T>(io: &mut T, payload: &[u8], max_bytes: u32) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let length = match u32::try_from(payload.len()) {
        Ok(length) if length <= max_bytes => length,
        _ => {
            return Err(too_large(
                io::ErrorKind::InvalidInput,
                payload.len(),
                max_bytes,
            ));
        }
    };
    io.write_all(&length.to_be_bytes()).await?;
    io.write_all(payload).await?;
    // The request-response handler closes the stream after writing.
    io.flush().await
}

async fn read_frame<T>(io: &mut T, max_bytes: u32) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    io.read_exact(&mut prefix).await?;
    let length = u32::from_be_bytes(prefix);
    // The check comes before any allocation sized by the peer.
    if length > max_bytes {
        return Err(too_large(
            io::ErrorKind::InvalidData,
            length as usize,
            max_bytes,
        ));
    }
    let mut payload = vec![0u8; length as usize];
    io.read_exact(&mut payload).await?;
    Ok(payload)
}

fn too_large(kind: io::ErrorKind, length: usize, max_bytes: u32) -> io::Error {
    io::Error::new(
        kind,
        format!("sync frame of {length} bytes exceeds the maximum of {max_bytes}"),
    )
}
