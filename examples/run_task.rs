//! What a Mesos agent does with lazyroot, in one program: prepare an image through the
//! provisioner daemon, pin it for a "container", run a task in its root filesystem with
//! runc (read-only root, as Mesos's bind backend gives), print the task's output, unpin.
//!
//! `cargo run --example run_task -- [--socket S] FQRN PATH [--tag T | --root-hash H] -- CMD...`
//! Needs root (the control socket is root's, runc) and a running `lazyroot provisioner`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use lazyroot::provisioner::api;
use lazyroot::provisioner::control_client::ControlClient;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut socket = PathBuf::from("/run/lazyroot/control.sock");
    let mut req = api::PrepareImageRequest::default();
    let mut positional = Vec::new();
    let mut cmd = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" => socket = args.next().context("--socket needs a path")?.into(),
            "--tag" => req.tag = args.next().context("--tag needs a name")?,
            "--root-hash" => req.root_hash = args.next().context("--root-hash needs a hash")?,
            "--" => cmd.extend(args.by_ref()),
            _ => positional.push(a),
        }
    }
    let [fqrn, path] = <[String; 2]>::try_from(positional).map_err(|_| {
        anyhow::anyhow!("usage: run_task [--socket S] FQRN PATH [--tag T] -- CMD...")
    })?;
    if cmd.is_empty() {
        bail!("no command to run (after --)");
    }
    req.fqrn = fqrn;
    req.path = path;

    let client = ControlClient::new(&socket);
    let image = client.prepare(&req)?;
    println!(
        "image {} ({}:{} at root hash {})",
        image.id, image.fqrn, image.path, image.root_hash
    );
    println!("rootfs {}", image.rootfs);
    let container = format!("run-task-{}", std::process::id());
    client.pin(&api::PinRequest {
        container_id: container.clone(),
        image_id: image.id.clone(),
        ..Default::default()
    })?;
    let result = run_in(&image, &container, &cmd);
    client.unpin(&api::UnpinRequest {
        container_id: container,
    })?;
    let out = result?;
    print!("{out}");
    Ok(())
}

/// An OCI bundle whose root is the image (read-only, through its appc entry as Mesos
/// would reach it), run with runc; the task's standard output.
fn run_in(image: &api::Image, container: &str, cmd: &[String]) -> anyhow::Result<String> {
    let bundle = tempfile::tempdir()?;
    let spec = Command::new("runc")
        .arg("spec")
        .current_dir(bundle.path())
        .status()
        .context("running `runc spec` (is runc installed?)")?;
    if !spec.success() {
        bail!("runc spec failed");
    }
    let config = bundle.path().join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&config)?)?;
    let rootfs = std::fs::canonicalize(PathBuf::from(&image.appc_dir).join("rootfs"))?;
    c["root"] = serde_json::json!({ "path": rootfs, "readonly": true });
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = serde_json::json!(cmd);
    std::fs::write(&config, serde_json::to_vec_pretty(&c)?)?;
    let out = Command::new("runc")
        .arg("--root")
        .arg(bundle.path().join("state"))
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(container)
        .output()
        .context("running runc")?;
    if !out.status.success() {
        bail!("the task failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
