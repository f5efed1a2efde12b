//! A progress bar for publishing, drawn only on a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use lazyroot::publish::Progress;

pub struct Bar(Option<ProgressBar>);

impl Bar {
    pub fn new() -> Self {
        Bar(std::io::stderr().is_terminal().then(ProgressBar::hidden))
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        if let Some(b) = &self.0 {
            b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            b.set_length(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_bar}",
                )
                .expect("static template"),
            );
        }
    }
    fn bytes(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
    fn warn(&self, msg: &str) {
        match &self.0 {
            Some(b) => b.suspend(|| tracing::warn!("{msg}")),
            None => tracing::warn!("{msg}"),
        }
    }
}
