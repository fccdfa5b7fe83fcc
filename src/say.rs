//! Notes and warnings that library code prints on stderr while it works, silenced by `kiln -q`
//! (which prints only errors); the command line sets the switch once at start.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `note: …` on stderr, unless quiet.
pub fn note(message: impl Display) {
    if !quiet() {
        eprintln!("note: {message}");
    }
}

/// `warning: …` on stderr, unless quiet.
pub fn warning(message: impl Display) {
    if !quiet() {
        eprintln!("warning: {message}");
    }
}
