//! Compiles proto/symbiont/v1/*.proto with protox (pure Rust: no system
//! protoc) and generates the tonic client and server code. The encoded
//! descriptor set is written to OUT_DIR for server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "symbiont/v1/common.proto",
        "symbiont/v1/node.proto",
        "symbiont/v1/query.proto",
        "symbiont/v1/stream.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("symbiont_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
