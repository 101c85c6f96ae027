//! The acknowledgement cursor file: 36 bytes, replaced atomically (temp file, fsync,
//! rename, fsync of the directory), so it is always the old value or the new one, whole.
//!
//! | offset | size | field                                 |
//! |-------:|-----:|---------------------------------------|
//! | 0      | 8    | magic `OCSPCURS`                      |
//! | 8      | 2    | version = 1                           |
//! | 10     | 2    | length = 36                           |
//! | 12     | 4    | flags = 0                             |
//! | 16     | 8    | cursor: every Close with seq ≤ it is acknowledged |
//! | 24     | 8    | written, Unix milliseconds            |
//! | 32     | 4    | CRC32C of bytes 0..32                 |

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::segment::{io_err, sync_dir};
use super::SpoolError;

const MAGIC: [u8; 8] = *b"OCSPCURS";
const VERSION: u16 = 1;
const LEN: usize = 36;

/// The cursor file of a spool directory.
pub(super) fn path(dir: &Path) -> PathBuf {
    dir.join("cursor")
}

fn tmp_path(dir: &Path) -> PathBuf {
    dir.join("cursor.tmp")
}

/// What was found on disk.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Loaded {
    /// No cursor file: nothing was ever acknowledged (or it was removed).
    Missing,
    /// A valid cursor.
    Valid(u64),
    /// A file that fails a check; what failed.
    Corrupt(&'static str),
}

pub(super) fn encode(cursor: u64, written_ms: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    let mut v = Vec::with_capacity(LEN);
    v.extend_from_slice(&MAGIC);
    v.extend_from_slice(&VERSION.to_le_bytes());
    v.extend_from_slice(&(LEN as u16).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&cursor.to_le_bytes());
    v.extend_from_slice(&written_ms.to_le_bytes());
    v.extend_from_slice(&crc32c::crc32c(&v).to_le_bytes());
    b.copy_from_slice(&v);
    b
}

fn le<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

pub(super) fn decode(b: &[u8]) -> Loaded {
    if b.len() != LEN {
        return Loaded::Corrupt("length");
    }
    if b.get(..8) != Some(&MAGIC[..]) {
        return Loaded::Corrupt("magic");
    }
    let fields = (|| {
        let crc = u32::from_le_bytes(le(b, 32)?);
        Some((
            crc32c::crc32c(b.get(..32)?) == crc,
            u16::from_le_bytes(le(b, 8)?),
            u16::from_le_bytes(le(b, 10)?),
            u32::from_le_bytes(le(b, 12)?),
            u64::from_le_bytes(le(b, 16)?),
        ))
    })();
    match fields {
        None => Loaded::Corrupt("length"),
        Some((false, ..)) => Loaded::Corrupt("checksum"),
        Some((true, VERSION, len, 0, cursor)) if usize::from(len) == LEN => Loaded::Valid(cursor),
        Some(_) => Loaded::Corrupt("version"),
    }
}

/// Reads the cursor of `dir`.
pub(super) fn load(dir: &Path) -> Result<Loaded, SpoolError> {
    let p = path(dir);
    match fs::read(&p) {
        Ok(b) => Ok(decode(&b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Loaded::Missing),
        Err(e) => Err(io_err(&p)(e)),
    }
}

/// Replaces the cursor of `dir` durably.
pub(super) fn store(dir: &Path, cursor: u64, now_ms: u64) -> Result<(), SpoolError> {
    let tmp = tmp_path(dir);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&encode(cursor, now_ms))?;
        f.sync_all()?;
        fs::rename(&tmp, path(dir))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    // The rename is durable only once the directory is.
    sync_dir(dir)
}
