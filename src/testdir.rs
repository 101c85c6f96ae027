//! A directory of its own for one test under the system temp dir, removed with everything in
//! it when its guard is dropped: at the end of the test, and while a failing test unwinds.
//! The name `ocedge-<tag>-<pid>-<n>` (`n` counts the calls in this process) keeps tests
//! running on parallel threads, and test binaries running side by side, apart.
//!
//! The unit tests use it as `crate::testdir`. The integration tests cannot see the library's
//! `cfg(test)` items, so they compile this same file into their crates with `#[path]`
//! (`tests/support/mod.rs`, and the suites that do without `support`).

// Each crate that compiles this file uses only part of it.
#![allow(dead_code)]

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh, empty directory, removed recursively on drop. Whatever runs in it (a gateway, a
/// spool) must be stopped before the guard goes.
#[derive(Debug)]
pub struct TempDir(PathBuf);

/// Creates `<temp>/ocedge-<tag>-<pid>-<n>`. A leftover of an earlier process that had the
/// same pid and was killed before its guards ran is removed first.
pub fn temp_dir(tag: &str) -> TempDir {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("ocedge-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    TempDir(path)
}

impl TempDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: failing here would turn a passing test into a failure, or a panic
        // during unwinding into an abort.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
