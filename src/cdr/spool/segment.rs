//! Segment files: names, creation, listing, and visiting their frames in bounded chunks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{HeaderError, Scan, Scanner, SegHeader, HEADER_LEN, MAX_PAYLOAD};
use super::SpoolError;

/// Bytes read at a time when visiting a segment; larger than any frame, so a frame cut by
/// the end of one chunk is whole in the next.
const CHUNK: u64 = 2 * MAX_PAYLOAD as u64;

/// What the spool knows about one segment file.
#[derive(Debug, Clone)]
pub(super) struct Seg {
    pub path: PathBuf,
    /// Bytes written (the file's length unless a write is in flight).
    pub len: u64,
    /// Highest seq in the segment (0: no frame yet).
    pub last_seq: u64,
    /// Highest seq of a Close in the segment (0: none).
    pub max_close: u64,
    /// Bytes of the frames of live Opens (calls not closed) in the segment.
    pub live_bytes: u64,
    /// A live Open in it could not be read back for re-journaling: never delete it.
    pub pinned: bool,
}

impl Seg {
    pub(super) fn new(path: PathBuf, len: u64) -> Seg {
        Seg {
            path,
            len,
            last_seq: 0,
            max_close: 0,
            live_bytes: 0,
            pinned: false,
        }
    }
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `seg-<first seq, 20 digits>.log`: names sort in seq order.
pub(super) fn path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("seg-{first_seq:020}.log"))
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where a repair writes the fresh copy of the segment at `path` before renaming it over
/// (`seg-<first seq>.log.repair`).
pub(super) fn repair_path(path: &Path) -> PathBuf {
    path.with_extension("log.repair")
}

/// True for the name of a [`repair_path`] copy.
pub(super) fn is_repair_copy(name: &str) -> bool {
    name.strip_suffix(".repair").and_then(parse_name).is_some()
}

/// The segment files of `dir`, oldest first. Other files are ignored.
pub(super) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_name) {
            found.push((first, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(first, _)| *first);
    Ok(found)
}

/// Creates a segment (it must not exist) and writes its header in one write.
pub(super) fn create(path: &Path, header: &SegHeader) -> Result<File, SpoolError> {
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    if let Err(e) = file.write_all(&header.encode()) {
        let _ = fs::remove_file(path);
        return Err(io_err(path)(e));
    }
    Ok(file)
}

/// Opens an existing segment to append to it.
pub(super) fn open_append(path: &Path) -> Result<File, SpoolError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

/// Makes renames, creations and deletions in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Reads and checks the header of an open segment of `len` bytes.
pub(super) fn read_header(
    file: &File,
    len: u64,
    path: &Path,
) -> Result<Result<SegHeader, HeaderError>, SpoolError> {
    if len < HEADER_LEN as u64 {
        return Ok(Err(HeaderError::Short));
    }
    let mut h = [0u8; HEADER_LEN];
    file.read_exact_at(&mut h, 0).map_err(io_err(path))?;
    Ok(SegHeader::decode(&h))
}

/// Calls `f` for every frame, skipped region and torn tail of `file` between `start` and
/// `end`, in order, until it returns `Break`. `expect`: the seq of the frame at `start`
/// (or the lowest it may have). Reads at most [`CHUNK`] bytes at a time, except after a
/// bad frame, when the rest of the segment is read to find the next good one.
pub(super) fn visit(
    file: &File,
    start: u64,
    end: u64,
    expect: u64,
    f: &mut dyn FnMut(Scan<'_>) -> ControlFlow<()>,
) -> io::Result<()> {
    let mut pos = start;
    let mut expect = expect;
    let mut whole = false;
    let mut buf = Vec::new();
    while pos < end {
        let want = if whole {
            end - pos
        } else {
            CHUNK.min(end - pos)
        };
        buf.resize(usize::try_from(want).map_err(io::Error::other)?, 0);
        file.read_exact_at(&mut buf, pos)?;
        let at_eof = pos + want == end;
        let mut scan = Scanner::new(&buf, pos, expect, at_eof);
        let mut next = pos + want;
        whole = false;
        while let Some(item) = scan.next_item() {
            match item {
                Scan::More { at, whole: w } => {
                    next = at;
                    whole = w;
                    break;
                }
                other => {
                    let tail = matches!(other, Scan::Tail { .. });
                    if f(other).is_break() || tail {
                        return Ok(());
                    }
                }
            }
        }
        expect = scan.expect();
        pos = next;
    }
    Ok(())
}
