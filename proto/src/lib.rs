//! The Symbiont gRPC API, package `symbiont.v1`: the generated messages,
//! the `Node`, `Query` and `Stream` clients and servers, and the encoded
//! descriptor set for server reflection. `prost` is re-exported for
//! `Message` (encoding, `encoded_len`).

pub use prost;

pub mod v1 {
    tonic::include_proto!("symbiont.v1");
}

/// The encoded `FileDescriptorSet` of every .proto here.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/symbiont_descriptor.bin"));
