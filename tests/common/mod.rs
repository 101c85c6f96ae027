//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The read-only `shared/` directory (torture corpus, bench material): `$OCEDGE_SHARED`, else
/// `../shared` beside the repository, else `/work/shared`. Panics with a clear message when
/// none exists, because a corpus test that silently tests nothing is worse than a failure.
pub fn shared_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("OCEDGE_SHARED").map(PathBuf::from),
        Some(manifest.join("../shared")),
        Some(PathBuf::from("/work/shared")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("corpus/EXPECTED.tsv").is_file())
        .unwrap_or_else(|| {
            panic!(
                "shared/ not found: set OCEDGE_SHARED to the directory holding corpus/EXPECTED.tsv"
            )
        })
}
