//! The persisted table: written after each successful sync, loaded at start so the gateway
//! serves at once (and resumes with a delta while the delta link is still good).
//!
//! # Format, version 1
//!
//! All integers little-endian. A 56-byte header, then the body.
//!
//! | offset | size | field                                                        |
//! |-------:|-----:|--------------------------------------------------------------|
//! | 0      | 8    | magic `OCEDGNUM`                                             |
//! | 8      | 2    | version = 1                                                  |
//! | 10     | 2    | header length = 56                                           |
//! | 12     | 4    | flags = 0 (a reader refuses unknown flags)                   |
//! | 16     | 8    | created, Unix milliseconds (when the table was synced)       |
//! | 24     | 8    | entry count                                                  |
//! | 32     | 4    | profile count                                                |
//! | 36     | 4    | delta link length (0: none), at most 16 KiB                  |
//! | 40     | 8    | body length                                                  |
//! | 48     | 4    | CRC32C of the body                                           |
//! | 52     | 4    | CRC32C of header bytes 0..52                                 |
//!
//! Body, exactly `body length` bytes:
//!
//! 1. the delta link, UTF-8;
//! 2. `profile count` profiles, each: tenant GUID (16 bytes, the hex digits in text order),
//!    URI form (1 byte: 0 literal, 1 `+number`, 2 digits), prefix (u16 length + UTF-8),
//!    suffix (u16 length + UTF-8), usage (u8 length + UTF-8), capability count (u8) and
//!    each name (u8 length + UTF-8) — the limits of [`super::entry`] apply;
//! 3. `entry count` entries of 12 bytes: the number's digits as a u64 (1 ..= 10^15 − 1)
//!    and the index of its profile (u32, below `profile count`).
//!
//! Checksums: the header CRC covers every header field; the body CRC covers every body
//! byte. Both are checked before anything is believed, and the file length must be exactly
//! header + body.
//!
//! # Writing and recovery
//!
//! [`write()`] writes `.<name>.tmp` in the same directory, fsyncs it, renames it over the
//! snapshot and fsyncs the directory, so the snapshot is always either the old file or the
//! new one, whole. There is no torn tail to repair: any error on [`read`] (wrong magic or
//! version, a checksum, a length, a bad record) rejects the whole file with an error that
//! says what; the sync loop logs it, reports it in the table's state, ignores the file and
//! does a full sync, whose success overwrites it. A temp file left by a crash is never
//! read and is overwritten by the next write.

mod decode;
mod encode;

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use decode::decode;
pub use encode::encode;

use super::batch::Batch;
use super::table::TableView;

/// The file's first 8 bytes.
pub const MAGIC: [u8; 8] = *b"OCEDGNUM";
/// The version this build writes and reads.
pub const VERSION: u16 = 1;
/// Header length of version 1.
pub const HEADER_LEN: usize = 56;
/// Longest delta link stored.
pub const MAX_DELTA_LINK: usize = 16 * 1024;
/// Bytes of one entry record.
const ENTRY_LEN: u64 = 12;

/// Why a snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Reading, writing, syncing or renaming failed.
    #[error("snapshot {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Not a number snapshot.
    #[error("not a number snapshot (bad magic)")]
    BadMagic,
    /// Written by another version.
    #[error("snapshot version {found} is not supported (this build reads version {VERSION})")]
    Version {
        /// The version in the file.
        found: u16,
    },
    /// Shorter than its header says.
    #[error("truncated {what}: needs {need} bytes, file has {have}")]
    Truncated {
        /// `header` or `body`.
        what: &'static str,
        /// Bytes needed.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// The header checksum does not match.
    #[error("header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum {
        /// In the file.
        stored: u32,
        /// Of the bytes read.
        computed: u32,
    },
    /// The body checksum does not match.
    #[error("body checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BodyChecksum {
        /// In the file.
        stored: u32,
        /// Of the bytes read.
        computed: u32,
    },
    /// Bytes after the body.
    #[error("{extra} bytes after the body")]
    TrailingBytes {
        /// How many.
        extra: u64,
    },
    /// The checksums match but a field is invalid (a bug in the writer, or tampering).
    #[error("corrupt snapshot at byte {offset}: {what}")]
    Corrupt {
        /// Byte offset in the file.
        offset: u64,
        /// What was wrong.
        what: &'static str,
    },
}

/// A snapshot read back.
#[derive(Debug)]
pub struct Loaded {
    /// When the table it holds was synced.
    pub created: SystemTime,
    /// The delta link to resume with.
    pub delta_link: Option<String>,
    /// The numbers, ready for [`super::NumberTable::install`].
    pub batch: Batch,
}

/// What [`write()`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Numbers.
    pub entries: u64,
    /// Distinct profiles.
    pub profiles: u32,
    /// File size.
    pub bytes: u64,
}

/// Writes `view` to `path` atomically: temp file in the same directory, fsync, rename,
/// fsync of the directory. Blocking: run it off the async workers.
pub fn write(
    path: &Path,
    view: &TableView,
    delta_link: Option<&str>,
    created: SystemTime,
) -> Result<Written, SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io_err(encode::too_long("snapshot path has no file name")))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        fs::create_dir_all(&dir)?;
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let written = encode(&mut w, view, delta_link, created)?;
        let file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory is.
        File::open(&dir)?.sync_all()?;
        Ok(written)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

/// Reads the snapshot at `path`; `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<Loaded>, SnapshotError> {
    match fs::read(path) {
        Ok(bytes) => decode(&bytes).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SnapshotError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests;
