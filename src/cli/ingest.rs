//! `lazyroot ingest`: container images into a repository.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lazyroot::ingest::layer::ReadLimits;
use lazyroot::ingest::run::{ingest, IngestOptions, Outcome};
use lazyroot::ingest::source::{Platform, SourceOptions};
use lazyroot::ingest::wishlist;

use super::RepoArgs;

#[derive(clap::Args)]
pub struct IngestArgs {
    /// Images: `[registry/]repository[:tag|@sha256:digest]` (Docker Hub's defaults:
    /// docker.io, library/), `oci:DIR[:tag]`, `docker-archive:FILE[:name:tag]`.
    #[arg(required_unless_present = "wishlist")]
    pub references: Vec<String>,
    /// A file of references, one a line (`#` comments; a registry reference's tag may be
    /// a glob, e.g. `library/python:3.1*`). A reference that fails is listed and the exit
    /// status is 3, but the others are published.
    #[arg(long)]
    pub wishlist: Option<PathBuf>,
    /// Remove the names under the prefix that no wishlist line (or REF) gives, and the
    /// images no name leads to afterwards (their objects stay: older revisions name them).
    #[arg(long, requires = "wishlist")]
    pub prune: bool,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Repository directory the images and their names go under (default: the root).
    #[arg(long, default_value = "")]
    pub path_prefix: String,
    /// The platform to take from multi-platform images, `os/arch[/variant]` (default: this
    /// host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Registry credentials, `user:password` (else from the Docker config).
    #[arg(long, env = "LAZYROOT_REGISTRY_CREDS")]
    pub creds: Option<String>,
    /// A Docker `config.json` with `auths` (default: $DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json, when present).
    #[arg(long)]
    pub docker_config: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for registries, besides the system's.
    #[arg(long = "ca")]
    pub ca_files: Vec<PathBuf>,
    /// A registry (`host[:port]`) reached over plain HTTP; others need HTTPS.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Seconds to wait for a registry to connect or to send more bytes.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

pub fn run(a: IngestArgs) -> anyhow::Result<ExitCode> {
    let prefix = match a.path_prefix.trim_end_matches('/') {
        "" => String::new(),
        p if p.starts_with('/') => p.to_string(),
        p => anyhow::bail!("--path-prefix must be absolute in the repository, not {p:?}"),
    };
    // A prefix names one directory plainly, and never one inside an image directory tree
    // (a prune under another prefix would take its images for unnamed ones).
    if let Some(bad) = prefix
        .split('/')
        .skip(1)
        .find(|c| c.is_empty() || *c == "." || *c == ".." || *c == lazyroot::ingest::names::FLAT)
    {
        anyhow::bail!("--path-prefix {prefix:?}: a component {bad:?} is not allowed");
    }
    let platform = match &a.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let mut source = SourceOptions::default();
    if let Some(c) = &a.creds {
        let (user, pass) = c
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--creds must be user:password"))?;
        source.creds = Some((user.to_string(), pass.to_string()));
    }
    if a.docker_config.is_some() {
        source.docker_config = a.docker_config.clone();
    }
    source.ca_files = a.ca_files.clone();
    source.insecure_registries = a.insecure_registries.clone();
    source.timeout = Duration::from_secs(a.timeout);
    let opts = IngestOptions {
        repo: a.repo.repo.clone(),
        keys: a.repo.keys.clone(),
        references: a.references.clone(),
        prefix,
        platform,
        source,
        limits: ReadLimits::default(),
        wishes: match &a.wishlist {
            Some(w) => wishlist::read(w)?,
            None => Vec::new(),
        },
        // One failing image must not hold back the rest of a wishlist (cron keeps
        // retrying the failed ones; the others should not wait for them).
        keep_going: a.wishlist.is_some(),
        prune: a.prune,
    };
    let r = ingest(&opts)?;
    for i in &r.images {
        let what = match i.outcome {
            Outcome::New => "new",
            Outcome::Relinked => "relinked",
            Outcome::Unchanged => "unchanged",
        };
        println!(
            "{} {what}: {} -> {}",
            i.reference, i.link, i.manifest_digest
        );
    }
    for p in &r.pruned {
        println!("pruned: {p}");
    }
    match r.revision {
        Some(rev) => println!("published revision {rev}"),
        None => println!("nothing changed; nothing published"),
    }
    println!(
        "layers fetched {}, reused {}; {} bytes downloaded; objects written {}, reused {}; {:.2} s",
        r.layers_fetched,
        r.layers_reused,
        r.bytes_downloaded,
        r.objects_written,
        r.objects_reused,
        r.seconds
    );
    if r.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{} references failed:", r.failed.len());
    for f in r.failed {
        // `{:#}`: the error with its causes, as the command's own errors are shown.
        eprintln!("  {}: {:#}", f.reference, anyhow::Error::new(f.error));
    }
    // 3, not 1: what failed is listed and the rest was published, which a script may want
    // to tell apart from a call that failed as a whole (1) or was misused (2, clap's).
    Ok(ExitCode::from(3))
}
