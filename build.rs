//! Generates Rust types from the schemas in proto/ (protox compiles them: no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The provisioner's control API: messages only, carried as JSON over HTTP (see the file).
    let control = ["proto/lazyroot/v1/control.proto"];
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .type_attribute(
            ".lazyroot.v1",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        )
        .compile_fds(protox::compile(control, ["proto"])?)?;
    for f in control {
        println!("cargo:rerun-if-changed={f}");
    }

    // The CSI v1 Identity and Node services (gRPC over a Unix socket; see src/csi/).
    let csi = ["proto/csi/v1/csi.proto"];
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(protox::compile(csi, ["proto"])?)?;
    for f in csi {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
