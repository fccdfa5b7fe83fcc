//! Reporting fetch progress on stderr: indicatif bars on a terminal (overall + one per download),
//! otherwise a plain line every few seconds, then a one-line summary; nothing when quiet.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{FetchItem, Progress};

/// How often the plain-line mode prints.
pub const LINE_INTERVAL: Duration = Duration::from_secs(3);

enum Mode {
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
    },
    Lines,
    Quiet,
}

/// Counters shared by every download task.
pub struct Reporter {
    mode: Mode,
    start: Instant,
    total_pkgs: u64,
    total_bytes: u64,
    done_pkgs: AtomicU64,
    cached_pkgs: AtomicU64,
    downloaded_pkgs: AtomicU64,
    failed_pkgs: AtomicU64,
    /// Sizes of finished packages plus the bytes present of packages in flight.
    done_bytes: AtomicU64,
    /// Bytes moved by this run (network or file:// copies).
    transferred: AtomicU64,
}

/// How a package ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Cached,
    Downloaded,
    Failed,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants, so this cannot fail; the fallback keeps it panic-free.
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Reporter {
    pub fn new(progress: &Progress, items: &[FetchItem]) -> Arc<Reporter> {
        let bars = match progress {
            Progress::Auto => std::io::stderr().is_terminal(),
            Progress::Bars => true,
            Progress::Lines | Progress::Quiet => false,
        };
        let total_pkgs = items.len() as u64;
        let mode = if bars {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(
                ProgressBar::new(total_pkgs)
                    .with_style(style("fetch [{bar:30}] {pos}/{len} packages, {msg}")),
            );
            Mode::Bars { multi, overall }
        } else if matches!(progress, Progress::Quiet) {
            Mode::Quiet
        } else {
            Mode::Lines
        };
        let r = Reporter {
            mode,
            start: Instant::now(),
            total_pkgs,
            total_bytes: items.iter().map(|i| i.size).sum(),
            done_pkgs: AtomicU64::new(0),
            cached_pkgs: AtomicU64::new(0),
            downloaded_pkgs: AtomicU64::new(0),
            failed_pkgs: AtomicU64::new(0),
            done_bytes: AtomicU64::new(0),
            transferred: AtomicU64::new(0),
        };
        r.update_overall();
        Arc::new(r)
    }

    /// Whether the caller should print `line()` every LINE_INTERVAL.
    pub fn wants_lines(&self) -> bool {
        matches!(self.mode, Mode::Lines)
    }

    fn bytes_text(&self) -> String {
        let done = self.done_bytes.load(Ordering::Relaxed);
        if self.total_bytes == 0 {
            mib(done)
        } else {
            format!("{} of {}", mib(done), mib(self.total_bytes))
        }
    }

    fn update_overall(&self) {
        if let Mode::Bars { overall, .. } = &self.mode {
            overall.set_position(self.done_pkgs.load(Ordering::Relaxed));
            overall.set_message(self.bytes_text());
        }
    }

    /// `fetch: 12/40 packages, 35.2 MiB of 80.1 MiB`
    pub fn line(&self) -> String {
        format!(
            "fetch: {}/{} packages, {}",
            self.done_pkgs.load(Ordering::Relaxed),
            self.total_pkgs,
            self.bytes_text()
        )
    }

    /// The final line: what came from where, and how long it took.
    pub fn summary(&self) -> String {
        let failed = self.failed_pkgs.load(Ordering::Relaxed);
        let mut s = format!(
            "fetch: {} packages, {}: {} downloaded ({}), {} from the cache",
            self.total_pkgs,
            mib(self.total_bytes),
            self.downloaded_pkgs.load(Ordering::Relaxed),
            mib(self.transferred.load(Ordering::Relaxed)),
            self.cached_pkgs.load(Ordering::Relaxed),
        );
        if failed > 0 {
            s.push_str(&format!(", {failed} failed"));
        }
        s.push_str(&format!(", in {:.1} s", self.start.elapsed().as_secs_f64()));
        s
    }

    /// A download in progress (its bar, and its share of the byte count).
    pub fn transfer(self: &Arc<Self>, nevra: &str, size: u64) -> Transfer {
        let bar = match &self.mode {
            Mode::Bars { multi, .. } => {
                let template = if size == 0 {
                    "  {msg:40!} {bytes} {bytes_per_sec}"
                } else {
                    "  {msg:40!} [{bar:20}] {bytes}/{total_bytes} {bytes_per_sec}"
                };
                Some(
                    multi.add(
                        ProgressBar::new(size)
                            .with_style(style(template))
                            .with_message(nevra.to_string()),
                    ),
                )
            }
            _ => None,
        };
        Transfer {
            reporter: Arc::clone(self),
            pos: AtomicU64::new(0),
            bar,
        }
    }

    /// Counts one package as finished.
    pub fn finished(&self, size: u64, how: Done) {
        self.done_pkgs.fetch_add(1, Ordering::Relaxed);
        let counter = match how {
            Done::Cached => &self.cached_pkgs,
            Done::Downloaded => &self.downloaded_pkgs,
            Done::Failed => &self.failed_pkgs,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.done_bytes.fetch_add(size, Ordering::Relaxed);
        self.update_overall();
    }

    /// Clears the bars and prints the summary (not when quiet).
    pub fn close(&self) {
        match &self.mode {
            Mode::Bars { multi, overall } => {
                overall.finish_and_clear();
                let _ = multi.clear();
                eprintln!("{}", self.summary());
            }
            Mode::Lines => eprintln!("{}", self.summary()),
            Mode::Quiet => {}
        }
    }
}

/// One file being transferred. Dropping it takes its bytes back out of the running count (the
/// package's full size is counted when it is finished).
pub struct Transfer {
    reporter: Arc<Reporter>,
    pos: AtomicU64,
    bar: Option<ProgressBar>,
}

impl Transfer {
    /// The file now holds `pos` bytes (an existing part being continued, or a restart).
    pub fn set(&self, pos: u64) {
        let old = self.pos.swap(pos, Ordering::Relaxed);
        let r = &self.reporter;
        if pos >= old {
            r.done_bytes.fetch_add(pos - old, Ordering::Relaxed);
        } else {
            r.done_bytes.fetch_sub(old - pos, Ordering::Relaxed);
        }
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
    }

    /// `n` more bytes arrived.
    pub fn add(&self, n: u64) {
        self.pos.fetch_add(n, Ordering::Relaxed);
        self.reporter.done_bytes.fetch_add(n, Ordering::Relaxed);
        self.reporter.transferred.fetch_add(n, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.set(0);
        if let Some(b) = &self.bar {
            b.finish_and_clear();
            if let Mode::Bars { multi, .. } = &self.reporter.mode {
                multi.remove(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(size: u64) -> FetchItem {
        FetchItem {
            nevra: "a-1-1.noarch".into(),
            urls: vec![],
            sha256: String::new(),
            size,
            gpgcheck: false,
            keys: vec![],
        }
    }

    #[test]
    fn lines_and_summary() {
        let mib = 1024 * 1024;
        let r = Reporter::new(&Progress::Lines, &[item(mib), item(3 * mib)]);
        assert!(r.wants_lines());
        assert_eq!(r.line(), "fetch: 0/2 packages, 0.0 MiB of 4.0 MiB");
        r.finished(mib, Done::Cached);
        let t = r.transfer("b-1-1.noarch", 3 * mib);
        t.set(mib / 2); // an existing part
        t.add(mib); // new bytes
        assert_eq!(r.line(), "fetch: 1/2 packages, 2.5 MiB of 4.0 MiB");
        t.set(0); // started over
        assert_eq!(r.line(), "fetch: 1/2 packages, 1.0 MiB of 4.0 MiB");
        t.add(3 * mib);
        drop(t);
        r.finished(3 * mib, Done::Downloaded);
        assert_eq!(r.line(), "fetch: 2/2 packages, 4.0 MiB of 4.0 MiB");
        let s = r.summary();
        assert!(
            s.starts_with(
                "fetch: 2 packages, 4.0 MiB: 1 downloaded (4.0 MiB), 1 from the cache, in "
            ),
            "{s}"
        );
        assert!(!Reporter::new(&Progress::Quiet, &[]).wants_lines());
    }
}
