//! `lazyroot provisioner` (the daemon) and its clients: `image prepare|list`, `pin`, `unpin`.

use std::path::PathBuf;
use std::process::ExitCode;

use lazyroot::provisioner::api;
use lazyroot::provisioner::control_client::ControlClient;
use lazyroot::provisioner::Config;

const DEFAULT_SOCKET: &str = "/run/lazyroot/control.sock";

#[derive(clap::Args)]
pub struct ProvisionerArgs {
    /// The daemon's configuration (JSON; see the README).
    #[arg(long, default_value = "/etc/lazyroot/provisioner.json")]
    pub config: PathBuf,
}

#[derive(clap::Args)]
pub struct ImageArgs {
    /// The provisioner's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Mount a repository directory at a revision as an image; prints its id and rootfs.
    Prepare {
        fqrn: String,
        path: String,
        #[arg(long, conflicts_with = "tag")]
        root_hash: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        /// Print the image as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The images and pins the provisioner holds.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct PinArgs {
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    pub container_id: String,
    pub image_id: String,
}

#[derive(clap::Args)]
pub struct UnpinArgs {
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    pub container_id: String,
}

pub fn provisioner(a: ProvisionerArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&a.config)?;
    lazyroot::provisioner::run::run(config)?;
    Ok(ExitCode::SUCCESS)
}

pub fn image(a: ImageArgs) -> anyhow::Result<ExitCode> {
    let client = ControlClient::new(&a.socket);
    match a.command {
        ImageCommand::Prepare {
            fqrn,
            path,
            root_hash,
            tag,
            json,
        } => {
            let img = client.prepare(&api::PrepareImageRequest {
                fqrn,
                path,
                root_hash: root_hash.unwrap_or_default(),
                tag: tag.unwrap_or_default(),
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&img)?);
            } else {
                println!("image {}", img.id);
                println!(
                    "  {}:{} root hash {} revision {}",
                    img.fqrn, img.path, img.root_hash, img.revision
                );
                println!("  rootfs {}", img.rootfs);
                println!("  appc name {} entry {}", img.appc_name, img.appc_dir);
            }
        }
        ImageCommand::List { json } => {
            let list = client.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for i in &list.images {
                    let pins = if i.pinned_by.is_empty() {
                        "-".to_string()
                    } else {
                        i.pinned_by.join(",")
                    };
                    println!(
                        "{} {}:{} {} pinned by {pins}",
                        i.id, i.fqrn, i.path, i.root_hash
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn pin(a: PinArgs) -> anyhow::Result<ExitCode> {
    let pin = ControlClient::new(&a.socket).pin(&api::PinRequest {
        container_id: a.container_id,
        image_id: a.image_id,
        // Made by hand: kept until unpinned by hand, whatever the agent re-syncs.
        operator_pin: true,
        ..Default::default()
    })?;
    println!(
        "{} pins {} ({})",
        pin.container_id, pin.root_hash, pin.rootfs
    );
    Ok(ExitCode::SUCCESS)
}

pub fn unpin(a: UnpinArgs) -> anyhow::Result<ExitCode> {
    let r = ControlClient::new(&a.socket).unpin(&api::UnpinRequest {
        container_id: a.container_id.clone(),
    })?;
    println!(
        "{} {}",
        a.container_id,
        if r.was_pinned {
            "unpinned"
        } else {
            "was not pinned"
        }
    );
    Ok(ExitCode::SUCCESS)
}
