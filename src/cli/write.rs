//! Subcommands that change a repository: mkfs, publish, resign, tag.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lazyroot::cvmfs::hash::{ContentHash, HashAlgo};
use lazyroot::publish::{self, lifecycle, AutoCatalogs, ChunkSizes, PublishOptions};

use super::progress::Bar;
use super::RepoArgs;

#[derive(clap::Args)]
pub struct MkfsArgs {
    /// Fully qualified repository name, e.g. images.example.org.
    pub fqrn: String,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Content hash algorithm: sha1, rmd160 or shake128.
    #[arg(long, default_value = "sha1")]
    pub hash: HashAlgo,
    /// Whitelist lifetime in days.
    #[arg(long, default_value_t = 30)]
    pub whitelist_days: i64,
    /// Catalog TTL in seconds (how soon clients look for a new revision).
    #[arg(long, default_value_t = 240)]
    pub ttl: u64,
}

#[derive(clap::Args)]
pub struct PublishArgs {
    /// Directory tree to publish.
    pub source: PathBuf,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Where in the repository to put it (default: replace the whole tree). The rest of
    /// the repository is left as it is; the path becomes a nested catalog of its own.
    #[arg(long, default_value = "")]
    pub path: String,
    /// Also tag the new revision with this name.
    #[arg(long)]
    pub tag: Option<String>,
    /// Description stored with --tag.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Store every file whole.
    #[arg(long)]
    pub no_chunking: bool,
    /// Chunk sizes in bytes as MIN,AVG,MAX (default 4 MiB, 8 MiB, 16 MiB).
    #[arg(long, value_parser = parse_triple)]
    pub chunk_sizes: Option<(u64, u64, u64)>,
    /// Cut catalogs automatically: MIN,MAX entries per catalog.
    #[arg(long, value_parser = parse_pair)]
    pub auto_catalogs: Option<(u64, u64)>,
    /// Catalog TTL in seconds.
    #[arg(long, default_value_t = 240)]
    pub ttl: u64,
    /// Read every file again instead of trusting the publish index.
    #[arg(long)]
    pub full: bool,
    /// zlib level of new objects, 0-9: 1 publishes about twice as fast, with objects
    /// about 18 % larger (more bytes for every client to download).
    #[arg(long, default_value_t = lazyroot::cvmfs::object::DEFAULT_LEVEL, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub compression_level: u32,
}

#[derive(clap::Args)]
pub struct ResignArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Whitelist lifetime in days.
    #[arg(long, default_value_t = 30)]
    pub days: i64,
}

#[derive(clap::Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
}

#[derive(clap::Args)]
pub struct TagArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Add (or move) a tag.
    #[arg(long, short)]
    pub add: Option<String>,
    /// The root hash to tag (default: the current revision).
    #[arg(long, requires = "add")]
    pub root_hash: Option<String>,
    /// Description for --add.
    #[arg(long, short = 'm', default_value = "")]
    pub description: String,
    /// Remove a tag.
    #[arg(long, short)]
    pub remove: Option<String>,
    /// Trusted master public key(s) for listing; default: the *.pub files in --keys.
    #[arg(long = "key")]
    pub key: Vec<PathBuf>,
}

fn parse_triple(s: &str) -> Result<(u64, u64, u64), String> {
    let v: Vec<u64> = s
        .split(',')
        .map(|x| x.trim().parse::<u64>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    match v[..] {
        [a, b, c] => Ok((a, b, c)),
        _ => Err("expected MIN,AVG,MAX".into()),
    }
}

fn parse_pair(s: &str) -> Result<(u64, u64), String> {
    let v: Vec<u64> = s
        .split(',')
        .map(|x| x.trim().parse::<u64>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    match v[..] {
        [a, b] if a < b => Ok((a, b)),
        _ => Err("expected MIN,MAX with MIN < MAX".into()),
    }
}

pub fn mkfs(a: MkfsArgs) -> anyhow::Result<ExitCode> {
    let m = lifecycle::mkfs(&lifecycle::MkfsOptions {
        repo: a.repo.repo.clone(),
        keys: a.repo.keys.clone(),
        fqrn: a.fqrn.clone(),
        algo: a.hash,
        whitelist_days: a.whitelist_days,
        ttl: a.ttl,
    })
    .with_context(|| {
        format!(
            "creating repository {} in {}",
            a.fqrn,
            a.repo.repo.display()
        )
    })?;
    println!(
        "created {} revision {} root {}",
        m.fqrn, m.revision, m.root_catalog
    );
    println!(
        "clients trust {}",
        a.repo.keys.join(format!("{}.pub", a.fqrn)).display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn publish(a: PublishArgs) -> anyhow::Result<ExitCode> {
    let mut o = PublishOptions::new(&a.repo.repo, &a.repo.keys, &a.source);
    o.path = a.path.clone().into_bytes();
    o.tag = a.tag.clone();
    o.tag_description = a.description.clone();
    o.chunking = if a.no_chunking {
        None
    } else {
        Some(
            a.chunk_sizes
                .map(|(min, avg, max)| ChunkSizes { min, avg, max })
                .unwrap_or_default(),
        )
    };
    o.auto_catalogs = a.auto_catalogs.map(|(min, max)| AutoCatalogs { min, max });
    o.ttl = a.ttl;
    o.full = a.full;
    o.compression_level = a.compression_level;

    let r = publish::publish(&o, &Bar::new()).with_context(|| {
        format!(
            "publishing {} into {}",
            a.source.display(),
            a.repo.repo.display()
        )
    })?;
    println!(
        "published revision {} root {}: {} entries, {} files read ({} bytes), {} unchanged, {} catalogs written, {} kept, {:.2} s",
        r.revision, r.root.hash, r.entries, r.files_read, r.bytes_read, r.files_reused, r.catalogs_written, r.catalogs_kept, r.seconds
    );
    let [walk, content, catalogs, commit] = r.phases;
    println!("phases: walk {walk:.2} s, content {content:.2} s, catalogs {catalogs:.2} s, commit {commit:.2} s");

    Ok(ExitCode::SUCCESS)
}

pub fn resign(a: ResignArgs) -> anyhow::Result<ExitCode> {
    let wl = lifecycle::resign(&a.repo.repo, &a.repo.keys, a.days)
        .with_context(|| format!("re-signing the whitelist of {}", a.repo.repo.display()))?;
    println!(
        "whitelist for {} valid until {}",
        wl.fqrn,
        lazyroot::cvmfs::timefmt::iso8601(wl.expires)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn repair(a: RepairArgs) -> anyhow::Result<ExitCode> {
    let r = lazyroot::publish::repair::repair(&a.repo.repo, &a.repo.keys)
        .with_context(|| format!("repairing {}", a.repo.repo.display()))?;
    match r.revision {
        None => println!(
            "{} catalogs, all already as stock CernVM-FS writes them; nothing published",
            r.catalogs
        ),
        Some(rev) => {
            println!(
                "revision {rev}: {} of {} catalogs rewritten ({} hard links split per directory, {} markers added) in {:.2} s",
                r.catalogs_rewritten, r.catalogs, r.links_split, r.markers_added, r.seconds
            );
            if !r.tags_moved.is_empty() {
                println!(
                    "tags moved to the repaired revision: {}",
                    r.tags_moved.join(", ")
                );
            }
            if !r.tags_left.is_empty() {
                println!(
                    "tags naming older revisions, not repaired (republish or retag them): {}",
                    r.tags_left.join(", ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tag(a: TagArgs) -> anyhow::Result<ExitCode> {
    if a.add.is_none() && a.remove.is_none() {
        return super::read::list_tags(&a.repo, &a.key);
    }
    let root = a.root_hash.as_deref().map(ContentHash::parse).transpose()?;
    let add = a.add.as_deref().map(|n| (n, root, a.description.as_str()));
    let m = lifecycle::edit_tag(&a.repo.repo, &a.repo.keys, add, a.remove.as_deref())
        .with_context(|| format!("editing tags of {}", a.repo.repo.display()))?;
    println!(
        "tags updated; history {}",
        m.history.map(|h| h.to_hex()).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
