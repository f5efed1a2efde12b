//! The `lazyroot` command: one binary, one subcommand per job.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The mount and the provisioner run many short-lived download threads; glibc would give
    // each its own malloc arena, and resident memory grows with the arenas, not the work.
    // A fixed mmap threshold, too: glibc raises it after a large block is freed, so that
    // the next 16 MiB FUSE request buffer (one per mount session) comes from an arena and
    // stays resident after its mount is gone; at 1 MiB such buffers always go back to the
    // system when freed.
    // SAFETY: called before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    init_logging();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lazyroot: error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error, filtered by `RUST_LOG` (`info` unless it says otherwise, e.g.
/// `RUST_LOG=lazyroot=debug`); a bad filter falls back to `info`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a journal or a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// The error and its causes on one line. Library errors already name their cause in their
/// own text (a library caller sees it there), so a cause the text ends with is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if msg.is_empty() {
            msg = s;
        } else if !msg.ends_with(&s) {
            msg.push_str(": ");
            msg.push_str(&s);
        }
    }
    msg
}
