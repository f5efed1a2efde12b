//! Subcommands that only read: ls, cat, info, check, and the tag listing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use lazyroot::cvmfs::catalog::EntryKind;
use lazyroot::cvmfs::hash::ContentHash;
use lazyroot::cvmfs::timefmt;
use lazyroot::repository::local::LocalStore;
use lazyroot::repository::{check as audit, listing};
use lazyroot::repository::{At, Repository, Trust};
use rsa::RsaPublicKey;

use super::{ReadArgs, RepoArgs};

#[derive(clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Directory (or file) inside the repository.
    #[arg(default_value = "/")]
    pub path: String,
    /// Long format: type, permissions, owner, size, mtime, name.
    #[arg(short, long)]
    pub long: bool,
    /// The whole tree below PATH, as a tab-separated listing with content SHA-1s
    /// (the layout of the fixture's expected-listing.tsv).
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

#[derive(clap::Args)]
pub struct CatArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    pub path: String,
}

#[derive(clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub read: ReadArgs,
}

/// Master public keys: the given files, *.pub in given directories, or *.pub in --keys.
fn trusted_keys(repo: &RepoArgs, given: &[PathBuf]) -> anyhow::Result<Vec<RsaPublicKey>> {
    let mut files = Vec::new();
    let sources: Vec<PathBuf> = if given.is_empty() {
        vec![repo.keys.clone()]
    } else {
        given.to_vec()
    };
    for p in &sources {
        if p.is_dir() {
            for e in std::fs::read_dir(p).with_context(|| format!("listing {}", p.display()))? {
                let e = e?.path();
                if e.extension().is_some_and(|x| x == "pub") {
                    files.push(e);
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        bail!(
            "no trusted master public key: none in {}; pass --key FILE",
            sources[0].display()
        );
    }
    files
        .iter()
        .map(|f| lazyroot::cvmfs::keys::load_master_public(f).map_err(anyhow::Error::from))
        .collect()
}

fn open(repo: &RepoArgs, keys: &[PathBuf]) -> anyhow::Result<Repository> {
    let trust = Trust {
        master_keys: trusted_keys(repo, keys)?,
        fqrn: None,
        now: timefmt::now(),
    };
    let store = LocalStore::new(&repo.repo);
    Repository::open(Arc::new(store), &trust)
        .with_context(|| format!("opening repository {}", repo.repo.display()))
}

fn at(r: &ReadArgs) -> anyhow::Result<At> {
    Ok(match (&r.root_hash, &r.tag) {
        (Some(h), _) => At::RootHash(ContentHash::parse(h)?),
        (_, Some(t)) => At::Tag(t.clone()),
        _ => At::Latest,
    })
}

pub fn ls(a: LsArgs) -> anyhow::Result<ExitCode> {
    let repo = open(&a.read.repo, &a.read.key)?;
    let snap = repo.snapshot(&at(&a.read)?)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    if a.recursive {
        for line in listing::listing(&snap, a.path.as_bytes())? {
            writeln!(out, "{line}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let found = snap.stat(a.path.as_bytes())?;
    let items = if found.entry.is_dir() {
        snap.list(&found.path)?
    } else {
        vec![found]
    };
    for f in items {
        let name = listing::escape(&f.entry.name);
        if a.long {
            let e = &f.entry;
            let link = if e.kind() == EntryKind::Symlink {
                format!(" -> {}", listing::escape(&e.symlink))
            } else {
                String::new()
            };
            writeln!(
                out,
                "{} {:04o} {:>5} {:>5} {:>12} {} {name}{link}",
                e.kind().letter(),
                e.permissions(),
                e.uid,
                e.gid,
                e.size,
                timefmt::iso8601(e.mtime)
            )?;
        } else {
            writeln!(out, "{name}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cat(a: CatArgs) -> anyhow::Result<ExitCode> {
    let repo = open(&a.read.repo, &a.read.key)?;
    let snap = repo.snapshot(&at(&a.read)?)?;
    // The whole content is verified before any of it is written.
    let mut buf = Vec::new();
    snap.read_file(a.path.as_bytes(), &mut buf)?;
    std::io::stdout().lock().write_all(&buf)?;
    Ok(ExitCode::SUCCESS)
}

pub fn info(a: InfoArgs) -> anyhow::Result<ExitCode> {
    let repo = open(&a.read.repo, &a.read.key)?;
    let m = repo.manifest();
    let snap = repo.snapshot(&at(&a.read)?)?;
    let root = repo.catalog(&snap.root_hash(), 0)?;
    let stats = root.lock().expect("catalog").statistics()?;
    // Stock catalogs store their own rows and the nested ones apart; show the whole tree.
    let totals = lazyroot::cvmfs::catalog::Counters::totals_from(&stats);
    let tags = repo
        .history()?
        .map(|h| h.tags())
        .transpose()?
        .unwrap_or_default();
    if a.json {
        let counters: serde_json::Map<String, serde_json::Value> = totals
            .0
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();

        let tags: Vec<_> = tags
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "root_hash": t.root_hash.to_hex(), "revision": t.revision, "timestamp": t.timestamp, "description": t.description}))
            .collect();
        let v = serde_json::json!({
            "fqrn": m.fqrn, "revision": m.revision, "root_hash": snap.root_hash().to_hex(),
            "timestamp": m.timestamp, "ttl": m.ttl, "hash_algorithm": m.hash_algo().name(),
            "whitelist_expires": repo.whitelist().expires, "counters": counters, "tags": tags,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("name:        {}", m.fqrn);
    println!("revision:    {}", m.revision);
    println!("root hash:   {}", snap.root_hash());
    println!(
        "published:   {} ({})",
        timefmt::iso8601(m.timestamp),
        m.timestamp
    );
    println!("hash:        {}", m.hash_algo().name());
    println!("ttl:         {} s", m.ttl);
    println!(
        "whitelist:   valid until {}",
        timefmt::iso8601(repo.whitelist().expires)
    );
    for (k, v) in &totals.0 {
        println!("{:<12} {v}", format!("{k}:"));
    }
    for t in tags {
        println!(
            "tag:         {} {} revision {} {}",
            t.name, t.root_hash, t.revision, t.description
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn list_tags(repo: &RepoArgs, keys: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let r = open(repo, keys)?;
    for t in r
        .history()?
        .map(|h| h.tags())
        .transpose()?
        .unwrap_or_default()
    {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            t.name,
            t.root_hash,
            t.revision,
            timefmt::iso8601(t.timestamp),
            t.description
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let repo = open(&a.read.repo, &a.read.key)?;
    let r = audit::check(&repo);
    for p in &r.problems {
        println!("problem: {p}");
    }
    println!(
        "checked {} catalogs, {} entries, {} objects: {} problems",
        r.catalogs,
        r.entries,
        r.objects,
        r.problems.len()
    );
    Ok(if r.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
