//! Byte layout of segment headers and frames, and the scanner that finds frames in a buffer
//! (see `docs/spool-format.md`). Pure: no I/O, no clock. Decoding never panics and never
//! trusts a length before bounding it.

use super::Kind;

/// A segment file's first 8 bytes.
pub(super) const SEG_MAGIC: [u8; 8] = *b"OCSPOOL1";
/// The segment version this build writes and reads.
pub(super) const VERSION: u16 = 1;
/// Bytes of a version 1 segment header.
pub(super) const HEADER_LEN: usize = 48;
/// `len` and `crc` in front of every frame body.
const PREFIX: usize = 8;
/// seq, time_ms, kind and key: the body before the payload.
const BODY_FIXED: usize = 33;
/// The smallest frame on disk (empty payload).
pub(super) const FRAME_MIN: usize = PREFIX + BODY_FIXED;
/// The largest payload a frame may carry; a larger append is refused, a larger length on
/// disk is corruption (so a flipped length can never make recovery allocate gigabytes).
pub const MAX_PAYLOAD: usize = 1 << 20;
const BODY_MAX: usize = BODY_FIXED + MAX_PAYLOAD;

/// What a frame records. `Forget` is internal: a tombstone that ends an Open whose Close
/// was in a deleted segment; it is never shown to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FrameKind {
    Open,
    Close,
    Forget,
}

impl FrameKind {
    fn byte(self) -> u8 {
        match self {
            FrameKind::Open => 1,
            FrameKind::Close => 2,
            FrameKind::Forget => 3,
        }
    }
    fn from_byte(b: u8) -> Option<FrameKind> {
        match b {
            1 => Some(FrameKind::Open),
            2 => Some(FrameKind::Close),
            3 => Some(FrameKind::Forget),
            _ => None,
        }
    }
    /// The caller-visible kind; `None` for tombstones.
    pub(super) fn public(self) -> Option<Kind> {
        match self {
            FrameKind::Open => Some(Kind::Open),
            FrameKind::Close => Some(Kind::Close),
            FrameKind::Forget => None,
        }
    }
}

impl From<Kind> for FrameKind {
    fn from(k: Kind) -> FrameKind {
        match k {
            Kind::Open => FrameKind::Open,
            Kind::Close => FrameKind::Close,
        }
    }
}

/// Bytes on disk of a frame carrying `payload_len` bytes.
pub(super) fn frame_len(payload_len: usize) -> usize {
    FRAME_MIN + payload_len
}

/// Appends one frame to `buf`.
pub(super) fn put_frame(
    buf: &mut Vec<u8>,
    seq: u64,
    time_ms: u64,
    kind: FrameKind,
    key: &[u8; 16],
    payload: &[u8],
) {
    let start = buf.len();
    // Callers refuse payloads above MAX_PAYLOAD, so the body length fits a u32.
    let body = u32::try_from(BODY_FIXED + payload.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&body.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&time_ms.to_le_bytes());
    buf.push(kind.byte());
    buf.extend_from_slice(key);
    buf.extend_from_slice(payload);
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&body.to_le_bytes()),
        buf.get(start + PREFIX..).unwrap_or(&[]),
    );
    if let Some(slot) = buf.get_mut(start + 4..start + PREFIX) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
}

/// A frame read back, borrowing its payload from the buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawFrame<'a> {
    pub seq: u64,
    pub time_ms: u64,
    pub kind: FrameKind,
    pub key: [u8; 16],
    pub payload: &'a [u8],
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

enum Decoded<'a> {
    Frame(RawFrame<'a>, usize),
    /// The buffer ends inside a frame whose length is plausible.
    Short,
    Bad,
}

/// Decodes the frame at the start of `b`; its seq must lie in `seqs`.
fn decode(b: &[u8], seqs: std::ops::RangeInclusive<u64>) -> Decoded<'_> {
    let Some(body) = le_u32(b, 0) else {
        return Decoded::Short;
    };
    let body = body as usize;
    if !(BODY_FIXED..=BODY_MAX).contains(&body) {
        return Decoded::Bad;
    }
    let (Some(crc), Some(rest)) = (le_u32(b, 4), b.get(PREFIX..PREFIX + body)) else {
        return Decoded::Short;
    };
    let (Some(seq), Some(time_ms), Some(&kind)) = (le_u64(rest, 0), le_u64(rest, 8), rest.get(16))
    else {
        return Decoded::Bad;
    };
    let (Some(kind), Some(key), Some(payload)) = (
        FrameKind::from_byte(kind),
        rest.get(17..33).and_then(|k| <[u8; 16]>::try_from(k).ok()),
        rest.get(BODY_FIXED..),
    ) else {
        return Decoded::Bad;
    };
    if !seqs.contains(&seq) {
        return Decoded::Bad;
    }
    let computed = crc32c::crc32c_append(crc32c::crc32c(&(body as u32).to_le_bytes()), rest);
    if computed != crc {
        return Decoded::Bad;
    }
    let frame = RawFrame {
        seq,
        time_ms,
        kind,
        key,
        payload,
    };
    Decoded::Frame(frame, PREFIX + body)
}

/// One thing the scanner found. Offsets are absolute (file offsets).
#[derive(Debug)]
pub(super) enum Scan<'a> {
    /// A valid frame at `at`, ending at `end`.
    Frame {
        at: u64,
        end: u64,
        frame: RawFrame<'a>,
    },
    /// Bytes `from..to` hold no valid frame; a valid one starts at `to`. `lost`: frames
    /// missing going by the seqs on either side (at least 1).
    Skip { from: u64, to: u64, lost: u64 },
    /// No valid frame from `from` to the end of the buffer, which is the end of the data.
    Tail { from: u64 },
    /// The buffer is not the end of the data and the scanner needs more of it from `at`:
    /// the rest of the data when `whole` (to look for the next valid frame), else at least
    /// one whole frame.
    More { at: u64, whole: bool },
}

/// Walks the frames of `buf`, which holds file bytes from offset `base`.
pub(super) struct Scanner<'a> {
    buf: &'a [u8],
    base: u64,
    pos: usize,
    expect: u64,
    at_eof: bool,
}

impl<'a> Scanner<'a> {
    /// `expect`: the lowest seq the next frame may carry; `at_eof`: `buf` runs to the end
    /// of the data.
    pub(super) fn new(buf: &'a [u8], base: u64, expect: u64, at_eof: bool) -> Scanner<'a> {
        Scanner {
            buf,
            base,
            pos: 0,
            expect,
            at_eof,
        }
    }

    /// The lowest seq the next frame may carry.
    pub(super) fn expect(&self) -> u64 {
        self.expect
    }

    fn abs(&self, pos: usize) -> u64 {
        self.base + pos as u64
    }

    /// The next item, `None` at the end of the buffer.
    pub(super) fn next_item(&mut self) -> Option<Scan<'a>> {
        let rest = self.buf.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        match decode(rest, self.expect..=u64::MAX) {
            Decoded::Frame(frame, len) => {
                let at = self.abs(self.pos);
                self.pos += len;
                self.expect = frame.seq.saturating_add(1);
                let end = self.abs(self.pos);
                Some(Scan::Frame { at, end, frame })
            }
            Decoded::Short if !self.at_eof => Some(Scan::More {
                at: self.abs(self.pos),
                whole: false,
            }),
            Decoded::Bad if !self.at_eof => Some(Scan::More {
                at: self.abs(self.pos),
                whole: true,
            }),
            Decoded::Short | Decoded::Bad => Some(self.resync()),
        }
    }

    /// After a bad frame at `pos`: the next offset holding a valid frame whose seq is
    /// plausible (a segment's seqs are consecutive, so no more frames can be missing than
    /// fit in the skipped bytes). Cheap checks first; the CRC only for candidates.
    fn resync(&mut self) -> Scan<'a> {
        let from = self.pos;
        let mut q = from + 1;
        while let Some(cand) = self.buf.get(q..) {
            if cand.len() < FRAME_MIN {
                break;
            }
            let max_lost = ((q - from) / FRAME_MIN) as u64 + 1;
            let seqs = self.expect..=self.expect.saturating_add(max_lost);
            if let Decoded::Frame(frame, _) = decode(cand, seqs) {
                let lost = frame.seq.saturating_sub(self.expect).max(1);
                self.pos = q;
                return Scan::Skip {
                    from: self.abs(from),
                    to: self.abs(q),
                    lost,
                };
            }
            q += 1;
        }
        self.pos = self.buf.len();
        Scan::Tail {
            from: self.abs(from),
        }
    }
}

/// A segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SegHeader {
    pub first_seq: u64,
    pub created_ms: u64,
    /// The acknowledgement cursor when the segment was created: a lower bound for it if the
    /// cursor file is ever lost.
    pub cursor: u64,
}

/// Why a header was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes: a segment torn while it was being created.
    Short,
    /// Wrong magic or checksum.
    Bad(&'static str),
    /// A valid header of a version or with flags this build does not know.
    Unsupported(u16, u32),
}

impl SegHeader {
    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        let fields: [&[u8]; 7] = [
            &SEG_MAGIC,
            &VERSION.to_le_bytes(),
            &(HEADER_LEN as u16).to_le_bytes(),
            &0u32.to_le_bytes(),
            &self.first_seq.to_le_bytes(),
            &self.created_ms.to_le_bytes(),
            &self.cursor.to_le_bytes(),
        ];
        let mut at = 0;
        for f in fields {
            if let Some(slot) = h.get_mut(at..at + f.len()) {
                slot.copy_from_slice(f);
            }
            at += f.len();
        }
        // Bytes 40..44 are reserved (zero); 44..48 the CRC32C of bytes 0..44.
        let crc = crc32c::crc32c(h.get(..44).unwrap_or(&[]));
        if let Some(slot) = h.get_mut(44..48) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
        h
    }

    pub(super) fn decode(b: &[u8]) -> Result<SegHeader, HeaderError> {
        let h = b.get(..HEADER_LEN).ok_or(HeaderError::Short)?;
        if h.get(..8) != Some(&SEG_MAGIC[..]) {
            return Err(HeaderError::Bad("magic"));
        }
        let crc = le_u32(h, 44).ok_or(HeaderError::Short)?;
        if crc32c::crc32c(h.get(..44).unwrap_or(&[])) != crc {
            return Err(HeaderError::Bad("header checksum"));
        }
        let field = |at| le_u64(h, at).ok_or(HeaderError::Short);
        let version = le_u16(h, 8).ok_or(HeaderError::Short)?;
        let len = le_u16(h, 10).ok_or(HeaderError::Short)?;
        let flags = le_u32(h, 12).ok_or(HeaderError::Short)?;
        if version != VERSION || usize::from(len) != HEADER_LEN || flags != 0 {
            return Err(HeaderError::Unsupported(version, flags));
        }
        Ok(SegHeader {
            first_seq: field(16)?,
            created_ms: field(24)?,
            cursor: field(32)?,
        })
    }
}
