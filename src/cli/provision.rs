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
    /// Do not run a daemon: upgrade the one running with this configuration in place (it
    /// starts the binary now installed, hands it every mount through the keeper, and
    /// exits); returns once the new one answers.
    #[arg(long)]
    pub upgrade: bool,
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
    if a.upgrade {
        return upgrade(&config);
    }
    lazyroot::provisioner::run::run(config)?;
    Ok(ExitCode::SUCCESS)
}

/// SIGUSR2 to the running daemon; waits (bounded) until another pid holds the state and
/// its control socket answers.
fn upgrade(config: &Config) -> anyhow::Result<ExitCode> {
    use lazyroot::provisioner::run::running_pid;
    use std::time::{Duration, Instant};
    if config.keeper_socket.is_none() {
        anyhow::bail!("no upgrade without a keeper (keeper_socket in the configuration): the images' mounts would die with the daemon");
    }
    let old = running_pid(&config.state).ok_or_else(|| {
        anyhow::anyhow!(
            "no provisioner is running with the state {}",
            config.state.display()
        )
    })?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGUSR2,
    )
    .map_err(|e| anyhow::anyhow!("signalling the provisioner (pid {old}): {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(180);
    let client = ControlClient::new(&config.control_socket);
    loop {
        if let Some(new) = running_pid(&config.state).filter(|&p| p != old) {
            if client.health().is_ok() {
                println!("upgraded: pid {old} handed over to pid {new}");
                return Ok(ExitCode::SUCCESS);
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the provisioner (pid {old}) was not replaced within 180 s (its log says why)"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
