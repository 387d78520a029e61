//! Compiles the Yahoo live-stream protobuf schema. protox is a protobuf compiler written in
//! Rust, so building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/yahoo_pricing.proto");
    let descriptors = protox::compile(["proto/yahoo_pricing.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
