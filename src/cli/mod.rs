//! Command-line interface: argument parsing and the glue to the library.

mod ingest;
mod keeper;
mod mount;
mod progress;
mod provision;
mod read;
mod serve;
mod write;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Where keys live unless `--keys` says otherwise.
pub const DEFAULT_KEYS: &str = "/etc/lazyroot/keys";

#[derive(Parser)]
#[command(
    name = "lazyroot",
    version,
    about = "Container root filesystems from CernVM-FS repositories, fetched lazily"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone)]
pub struct RepoArgs {
    /// Repository directory (what is served as /cvmfs/<fqrn>).
    #[arg(long)]
    pub repo: PathBuf,
    /// Directory holding the repository's keys (<fqrn>.masterkey, .pub, .key, .crt).
    #[arg(long, default_value = DEFAULT_KEYS, env = "LAZYROOT_KEYS")]
    pub keys: PathBuf,
}

#[derive(clap::Args, Clone)]
pub struct ReadArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Trusted master public key file, or a directory of *.pub files (repeatable);
    /// default: the *.pub files in --keys.
    #[arg(long = "key")]
    pub key: Vec<PathBuf>,
    /// Read the revision with this root catalog hash.
    #[arg(long, conflicts_with = "tag")]
    pub root_hash: Option<String>,
    /// Read the revision with this tag.
    #[arg(long)]
    pub tag: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a repository: keys, whitelist, and revision 1 with an empty root.
    Mkfs(write::MkfsArgs),
    /// Publish a directory tree as the next revision.
    Publish(write::PublishArgs),
    /// Ingest container images (registries, OCI layouts, docker archives) as the next
    /// revision: each image a content-named directory, named by registry, repository, tag.
    Ingest(ingest::IngestArgs),
    /// Sign a new whitelist (they expire; 30 days by default).
    Resign(write::ResignArgs),
    /// Rewrite the current revision's catalogs that differ from what stock CernVM-FS writes
    /// (root entry not in row 1, hard links across directories, nested catalogs without a
    /// `.cvmfscatalog`), signed as the next revision.
    Repair(write::RepairArgs),
    /// List a directory (or with -R, a whole tree).
    Ls(read::LsArgs),
    /// Write a file's content to standard output.
    Cat(read::CatArgs),
    /// Show the repository's name, revision, root hash, timestamp, counters and tags.
    Info(read::InfoArgs),
    /// List, add or remove tags.
    Tag(write::TagArgs),
    /// Verify every object and catalog reachable from the manifest.
    Check(read::CheckArgs),
    /// Mount a repository through FUSE, downloading only what is read.
    Mount(mount::MountArgs),
    /// Keep FUSE connections alive across daemon crashes: hold their descriptors for a
    /// restarted daemon to claim, abort those nobody claims in time.
    Keeper(keeper::KeeperArgs),
    /// Serve repositories over HTTP under /cvmfs/<fqrn>/.
    Serve(serve::ServeArgs),
    /// Run the provisioner daemon: images mounted lazily for Mesos (appc store), pins, CSI.
    Provisioner(provision::ProvisionerArgs),
    /// Prepare or list images through the provisioner.
    Image(provision::ImageArgs),
    /// Hold an image's revision for a container.
    Pin(provision::PinArgs),
    /// Release a container's pin.
    Unpin(provision::UnpinArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Mkfs(a) => write::mkfs(a),
        Command::Publish(a) => write::publish(a),
        Command::Ingest(a) => ingest::run(a),
        Command::Resign(a) => write::resign(a),
        Command::Tag(a) => write::tag(a),
        Command::Repair(a) => write::repair(a),
        Command::Ls(a) => read::ls(a),
        Command::Cat(a) => read::cat(a),
        Command::Info(a) => read::info(a),
        Command::Check(a) => read::check(a),
        Command::Mount(a) => mount::mount(a),
        Command::Keeper(a) => keeper::keeper(a),
        Command::Serve(a) => serve::serve(a),
        Command::Provisioner(a) => provision::provisioner(a),
        Command::Image(a) => provision::image(a),
        Command::Pin(a) => provision::pin(a),
        Command::Unpin(a) => provision::unpin(a),
    }
}
