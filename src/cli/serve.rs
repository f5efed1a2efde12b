//! `lazyroot serve`: repositories over HTTP under `/cvmfs/<fqrn>/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use lazyroot::server::{self, ServedRepo};
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// Repository directory to serve, under the name in its manifest (repeatable).
    #[arg(long)]
    pub repo: Vec<PathBuf>,
    /// Serve every subdirectory of DIR that holds a .cvmfspublished, as /srv/cvmfs does.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Connections held at once [default: 4096, or fewer if the open-file limit is lower].
    /// When all are taken, the oldest idle one is closed for a newcomer.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Connections held at once for one client address (a proxy or NAT counts as one).
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_client: u32,
}

pub fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let repos = repositories(&a)?;
    raise_open_file_limit();
    let mut limits = server::Limits {
        max_connections_per_client: a.max_connections_per_client as usize,
        ..server::Limits::default()
    };
    if let Some(n) = a.max_connections {
        limits.max_connections = n as usize;
    }
    // Files are read on the blocking pool; two workers keep the network side busy enough.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve_until_signal(&a.listen, repos, limits))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve_until_signal(
    listen: &str,
    repos: Vec<ServedRepo>,
    limits: server::Limits,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    for r in &repos {
        println!(
            "serving {} from {} at http://{addr}/cvmfs/{}",
            r.fqrn,
            r.dir.display(),
            r.fqrn
        );
    }
    // Handlers are installed before serving so an early signal is not the default (death).
    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    server::run_with(listener, repos, limits, shutdown)
        .await
        .with_context(|| format!("serving on {addr}"))
}

/// Raises the open-file soft limit to the hard one: every connection is a descriptor, and
/// the soft limit is often 1024 where the hard one is far higher (systemd's defaults). The
/// default connection cap is then computed from the raised limit.
#[allow(unsafe_code)]
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
        }
    };
    if !raised {
        tracing::debug!(
            "cannot raise the open-file limit: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Every `--repo`, then every repository directly under `--root`, in name order.
fn repositories(a: &ServeArgs) -> anyhow::Result<Vec<ServedRepo>> {
    let mut dirs = a.repo.clone();
    if let Some(root) = &a.root {
        dirs.extend(repository_dirs(root)?);
    }
    if dirs.is_empty() {
        bail!("nothing to serve: give --repo DIR or --root DIR (a directory of repositories)");
    }
    dirs.iter()
        .map(|d| server::discover(d).with_context(|| format!("serving {}", d.display())))
        .collect()
}

/// Subdirectories (or symlinks to them) holding a manifest; others (keys, lost+found, a
/// half-created repository) are not repositories and are skipped.
fn repository_dirs(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(root).with_context(|| format!("listing {}", root.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", root.display()))?
            .path();
        if path.join(".cvmfspublished").is_file() {
            dirs.push(path);
        }
    }
    if dirs.is_empty() {
        bail!(
            "no repositories under {}: none of its subdirectories holds a .cvmfspublished",
            root.display()
        );
    }
    dirs.sort();
    Ok(dirs)
}
