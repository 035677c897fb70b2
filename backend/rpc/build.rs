//! Generates the gRPC code for `proto/*.proto` with the protoc shipped inside
//! `protoc-bin-vendored`, so that a fresh machine needs nothing installed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A PROTOC from the environment wins (a distribution packaging its own);
    // otherwise the vendored binary.
    if std::env::var_os("PROTOC").is_none() {
        let protoc: PathBuf = protoc_bin_vendored::protoc_bin_path()?;
        std::env::set_var("PROTOC", protoc);
    }
    println!("cargo:rerun-if-env-changed=PROTOC");
    // Printing any rerun-if line turns off cargo's default (rerun when any
    // file of the package changes), so name the inputs.
    for proto in ["proto/store.proto", "proto/push.proto"] {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        // Payloads and keys become `bytes::Bytes`: decoding slices the
        // received buffer instead of copying every payload into a Vec.
        .bytes(".")
        // No `Client::connect(dst)` constructor: it would clash with the store's
        // `Connect` rpc, and the clients build their channel themselves.
        .build_transport(false)
        .compile_protos(&["proto/store.proto", "proto/push.proto"], &["proto"])?;
    Ok(())
}
