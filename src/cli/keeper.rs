//! `lazyroot keeper`: run the keeper of FUSE connections, or list what a running one holds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use lazyroot::keeper::{self, KeeperClient, KeeperOptions, KeyState};

#[derive(clap::Args)]
pub struct KeeperArgs {
    /// The keeper's socket (its directory is created, mode 0700, if missing).
    #[arg(long, default_value = keeper::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Seconds an orphaned connection (its daemon died) waits for a new daemon to claim
    /// it before it is aborted.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub takeover_timeout: u64,
    /// Exit after holding nothing, with no client connected, for SECS (0: never). Nothing
    /// is lost then: a daemon that needs a keeper starts one.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub idle_exit: u64,
    /// List the keys the keeper at --socket holds (tab-separated: key, state, seconds
    /// until abort, descriptors, fusectl number, mount point), and exit.
    #[arg(long)]
    pub list: bool,
    /// With --list: print the keys as JSON.
    #[arg(long, requires = "list")]
    pub json: bool,
}

pub fn keeper(a: KeeperArgs) -> anyhow::Result<ExitCode> {
    if a.list {
        return list(&a);
    }
    let options = KeeperOptions {
        takeover_timeout: Duration::from_secs(a.takeover_timeout),
        idle_exit: (a.idle_exit > 0).then(|| Duration::from_secs(a.idle_exit)),
    };
    keeper::run(&a.socket, &options)?;
    Ok(ExitCode::SUCCESS)
}

fn list(a: &KeeperArgs) -> anyhow::Result<ExitCode> {
    let client = KeeperClient::connect(&a.socket)?;
    let keys = client.list().context("listing the keeper's keys")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&keys)?);
        return Ok(ExitCode::SUCCESS);
    }
    for k in keys {
        let (state, abort_in) = match k.state {
            KeyState::Owned => ("owned", "-".to_owned()),
            KeyState::Orphaned { abort_in } => ("orphaned", abort_in.as_secs().to_string()),
        };
        let fusectl = k.fusectl.map_or_else(|| "-".to_owned(), |n| n.to_string());
        println!(
            "{}\t{state}\t{abort_in}\t{}\t{fusectl}\t{}",
            k.key,
            k.fds,
            k.mountpoint.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
