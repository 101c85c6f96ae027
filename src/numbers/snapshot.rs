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
//! [`write`] writes `.<name>.tmp` in the same directory, fsyncs it, renames it over the
//! snapshot and fsyncs the directory, so the snapshot is always either the old file or the
//! new one, whole. There is no torn tail to repair: any error on [`read`] (wrong magic or
//! version, a checksum, a length, a bad record) rejects the whole file with an error that
//! says what; the sync loop logs it, reports it in the table's state, ignores the file and
//! does a full sync, whose success overwrites it. A temp file left by a crash is never
//! read and is overwritten by the next write.

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::entry::{
    Profile, Template, TenantId, UriForm, MAX_CAPABILITIES, MAX_CAPABILITY, MAX_SIP_URI, MAX_USAGE,
};
use super::shards::MAX_KEY;
use super::table::{Batch, TableView};

/// The file's first 8 bytes.
pub const MAGIC: [u8; 8] = *b"OCEDGNUM";
/// The version this build writes and reads.
pub const VERSION: u16 = 1;
/// Header length of version 1.
pub const HEADER_LEN: usize = 56;
/// Longest delta link stored.
pub const MAX_DELTA_LINK: usize = 16 * 1024;
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

/// What [`write`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Numbers.
    pub entries: u64,
    /// Distinct profiles.
    pub profiles: u32,
    /// File size.
    pub bytes: u64,
}

/// Counts and checksums what passes through.
struct Crc<W> {
    inner: W,
    crc: u32,
    len: u64,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let done = buf.get(..n).unwrap_or(buf);
        self.crc = crc32c::crc32c_append(self.crc, done);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn too_long(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

fn put_str<W: Write>(w: &mut W, s: &str, wide: bool, max: usize) -> io::Result<()> {
    if s.len() > max {
        return Err(too_long("string over its limit"));
    }
    if wide {
        w.write_all(&(s.len() as u16).to_le_bytes())?;
    } else {
        w.write_all(&[s.len() as u8])?;
    }
    w.write_all(s.as_bytes())
}

fn put_profile<W: Write>(w: &mut W, p: &Profile) -> io::Result<()> {
    let t = p.template();
    w.write_all(&p.tenant().to_bytes())?;
    w.write_all(&[t.form as u8])?;
    put_str(w, t.prefix, true, MAX_SIP_URI)?;
    put_str(w, t.suffix, true, MAX_SIP_URI)?;
    put_str(w, p.usage(), false, MAX_USAGE)?;
    let names: Vec<&str> = p.capability_names().collect();
    if names.len() > MAX_CAPABILITIES {
        return Err(too_long("too many capabilities"));
    }
    w.write_all(&[names.len() as u8])?;
    names
        .iter()
        .try_for_each(|n| put_str(w, n, false, MAX_CAPABILITY))
}

/// Encodes `view` into `out` (positioned at its start), the format above. Pure but for
/// `out`; used by [`write`] and by tests with an in-memory cursor.
pub fn encode<W: Write + Seek>(
    out: &mut W,
    view: &TableView,
    delta_link: Option<&str>,
    created: SystemTime,
) -> io::Result<Written> {
    let link = delta_link.unwrap_or("");
    if link.len() > MAX_DELTA_LINK {
        return Err(too_long("delta link over its limit"));
    }
    // Profile ids may have holes (freed ids): number the ones in use densely.
    let mut dense = vec![u32::MAX; view.profile_id_bound()];
    let mut profiles: Vec<&Profile> = Vec::new();
    let mut entries = 0u64;
    for (_, id) in view.raw() {
        entries += 1;
        let (Some(d), Some(p)) = (dense.get_mut(id as usize), view.profile(id)) else {
            return Err(io::Error::other("slot refers to a missing profile"));
        };
        if *d == u32::MAX {
            *d = profiles.len() as u32;
            profiles.push(p);
        }
    }
    let profile_count = u32::try_from(profiles.len()).map_err(|_| too_long("profiles"))?;
    out.write_all(&[0u8; HEADER_LEN])?;
    let mut body = Crc {
        inner: &mut *out,
        crc: 0,
        len: 0,
    };
    body.write_all(link.as_bytes())?;
    for p in &profiles {
        put_profile(&mut body, p)?;
    }
    let mut rec = [0u8; ENTRY_LEN as usize];
    for (key, id) in view.raw() {
        let id = dense.get(id as usize).copied().unwrap_or(0);
        rec[..8].copy_from_slice(&key.to_le_bytes());
        rec[8..].copy_from_slice(&id.to_le_bytes());
        body.write_all(&rec)?;
    }
    let (body_crc, body_len) = (body.crc, body.len);
    let ms = created
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(&MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&ms.to_le_bytes());
    h.extend_from_slice(&entries.to_le_bytes());
    h.extend_from_slice(&profile_count.to_le_bytes());
    h.extend_from_slice(&(link.len() as u32).to_le_bytes());
    h.extend_from_slice(&body_len.to_le_bytes());
    h.extend_from_slice(&body_crc.to_le_bytes());
    h.extend_from_slice(&crc32c::crc32c(&h).to_le_bytes());
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&h)?;
    out.seek(SeekFrom::End(0))?;
    Ok(Written {
        entries,
        profiles: profile_count,
        bytes: HEADER_LEN as u64 + body_len,
    })
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
        .ok_or_else(|| io_err(too_long("snapshot path has no file name")))?;
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

/// A cursor over the file that fails instead of running off the end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, what: &'static str) -> SnapshotError {
        SnapshotError::Corrupt {
            offset: self.pos as u64,
            what,
        }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SnapshotError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.corrupt(what))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.corrupt(what))?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], SnapshotError> {
        let s = self.take(N, what)?;
        s.try_into().map_err(|_| self.corrupt(what))
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn str(
        &mut self,
        len: usize,
        max: usize,
        what: &'static str,
    ) -> Result<&'a str, SnapshotError> {
        if len > max {
            return Err(self.corrupt(what));
        }
        let s = self.take(len, what)?;
        std::str::from_utf8(s).map_err(|_| self.corrupt(what))
    }
}

/// Header fields after checking.
struct Header {
    created: SystemTime,
    entries: u64,
    profiles: u32,
    link_len: usize,
    body_len: u64,
}

fn header(buf: &[u8]) -> Result<Header, SnapshotError> {
    let truncated = |need: usize| SnapshotError::Truncated {
        what: "header",
        need: need as u64,
        have: buf.len() as u64,
    };
    let magic = buf
        .get(..MAGIC.len())
        .ok_or_else(|| truncated(HEADER_LEN))?;
    if magic != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let mut r = Reader { buf, pos: 8 };
    let version = r.u16("version").map_err(|_| truncated(HEADER_LEN))?;
    if version != VERSION {
        return Err(SnapshotError::Version { found: version });
    }
    let fixed = buf.get(..HEADER_LEN).ok_or_else(|| truncated(HEADER_LEN))?;
    let computed = crc32c::crc32c(fixed.get(..HEADER_LEN - 4).unwrap_or(&[]));
    let stored = u32::from_le_bytes(r.buf_at(HEADER_LEN - 4)?);
    if stored != computed {
        return Err(SnapshotError::HeaderChecksum { stored, computed });
    }
    if usize::from(r.u16("header length")?) != HEADER_LEN {
        return Err(r.corrupt("header length"));
    }
    if r.u32("flags")? != 0 {
        return Err(r.corrupt("unknown flags"));
    }
    let ms = r.u64("created")?;
    let entries = r.u64("entry count")?;
    let profiles = r.u32("profile count")?;
    let link_len = r.u32("delta link length")? as usize;
    let body_len = r.u64("body length")?;
    Ok(Header {
        created: UNIX_EPOCH + Duration::from_millis(ms),
        entries,
        profiles,
        link_len,
        body_len,
    })
}

impl Reader<'_> {
    fn buf_at<const N: usize>(&self, at: usize) -> Result<[u8; N], SnapshotError> {
        self.buf
            .get(at..at + N)
            .and_then(|s| s.try_into().ok())
            .ok_or(SnapshotError::Corrupt {
                offset: at as u64,
                what: "header",
            })
    }
}

/// Decodes a whole snapshot file. Never panics; every failure says what was wrong.
pub fn decode(buf: &[u8]) -> Result<Loaded, SnapshotError> {
    let h = header(buf)?;
    let have = (buf.len() as u64).saturating_sub(HEADER_LEN as u64);
    if have < h.body_len {
        return Err(SnapshotError::Truncated {
            what: "body",
            need: HEADER_LEN as u64 + h.body_len,
            have: buf.len() as u64,
        });
    }
    if have > h.body_len {
        return Err(SnapshotError::TrailingBytes {
            extra: have - h.body_len,
        });
    }
    let body = buf.get(HEADER_LEN..).unwrap_or(&[]);
    let stored = u32::from_le_bytes(Reader { buf, pos: 0 }.buf_at(48)?);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(SnapshotError::BodyChecksum { stored, computed });
    }
    let mut r = Reader {
        buf,
        pos: HEADER_LEN,
    };
    let link = r.str(h.link_len, MAX_DELTA_LINK, "delta link")?;
    let mut batch = Batch::new();
    // Bound allocations by what the body can hold before trusting the counts.
    let min_profile = 16 + 1 + 2 + 2 + 1 + 1;
    if u64::from(h.profiles).saturating_mul(min_profile) > h.body_len
        || h.entries.saturating_mul(ENTRY_LEN) > h.body_len
    {
        return Err(r.corrupt("counts exceed the body"));
    }
    let mut ids = Vec::with_capacity(h.profiles as usize);
    for _ in 0..h.profiles {
        ids.push(read_profile(&mut r, &mut batch)?);
    }
    for _ in 0..h.entries {
        let key = r.u64("entry")?;
        let id = r.u32("entry")?;
        if key == 0 || key > MAX_KEY {
            return Err(r.corrupt("entry number out of range"));
        }
        let id = ids
            .get(id as usize)
            .ok_or_else(|| r.corrupt("entry profile index out of range"))?;
        batch.push_op((key, Some(*id)));
    }
    if r.pos != buf.len() {
        return Err(r.corrupt("body longer than its records"));
    }
    Ok(Loaded {
        created: h.created,
        delta_link: (!link.is_empty()).then(|| link.to_owned()),
        batch,
    })
}

fn read_profile(r: &mut Reader<'_>, batch: &mut Batch) -> Result<u32, SnapshotError> {
    let tenant = TenantId::from_bytes(r.array("profile tenant")?);
    let form = UriForm::from_tag(r.u8("profile URI form")?)
        .ok_or_else(|| r.corrupt("profile URI form"))?;
    let n = usize::from(r.u16("profile URI prefix")?);
    let prefix = r.str(n, MAX_SIP_URI, "profile URI prefix")?;
    let n = usize::from(r.u16("profile URI suffix")?);
    let suffix = r.str(n, MAX_SIP_URI, "profile URI suffix")?;
    let n = usize::from(r.u8("profile usage")?);
    let usage = r.str(n, MAX_USAGE, "profile usage")?;
    let count = usize::from(r.u8("profile capabilities")?);
    if count > MAX_CAPABILITIES {
        return Err(r.corrupt("profile capabilities"));
    }
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        let n = usize::from(r.u8("profile capability")?);
        names.push(Box::<str>::from(r.str(
            n,
            MAX_CAPABILITY,
            "profile capability",
        )?));
    }
    let t = Template {
        form,
        prefix,
        suffix,
    };
    Ok(batch.registry().intern_parts(tenant, t, usage, &names))
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
