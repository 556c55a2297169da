//! Compiles the fleet's gRPC contracts in `proto/` with `protox` (pure Rust, so no
//! system `protoc` is needed) and keeps the encoded descriptor set for server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let services = [
        "workflow",
        "execution",
        "auth",
        "notification",
        "analytics",
        "storage",
        "privacy",
    ];
    let files: Vec<_> = services
        .iter()
        .map(|s| proto_root.join(format!("flowfleet/{s}/v1/{s}.proto")))
        .collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let fds = protox::compile(&files, [&proto_root])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("flowfleet_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
