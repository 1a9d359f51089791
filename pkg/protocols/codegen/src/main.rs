//! Generates the ttrpc + protobuf Rust code of the agent API into `pkg/protocols/src/`.
//! The generated files are checked in so that building the project needs no code generation.

use anyhow::Context;
use std::path::Path;
use ttrpc_codegen::{Codegen, Customize, ProtobufCustomize};

fn main() -> anyhow::Result<()> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("codegen crate has no parent directory")?;
    let protos = ["protos/agent.proto", "protos/health.proto"].map(|p| crate_dir.join(p));
    Codegen::new()
        .out_dir(crate_dir.join("src"))
        .inputs(protos)
        .include(crate_dir.join("protos"))
        .rust_protobuf()
        .customize(Customize {
            ..Default::default()
        })
        .rust_protobuf_customize(ProtobufCustomize::default().gen_mod_rs(false))
        .run()
        .context("generating the agent protocol code")?;
    Ok(())
}
