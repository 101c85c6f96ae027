//! Reading Close entries for the uploader, from where its last read stopped.

use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::path::PathBuf;

use super::engine::{lock, Spool};
use super::format::{FrameKind, Scan, HEADER_LEN};
use super::segment::{io_err, visit};
use super::{Entry, Kind, SpoolError};

/// Where the last [`Spool::read_closes`] stopped: no Close has a seq in `(lo, hi]`, `hi`
/// is the seq of the frame that ends at `offset` in segment `seg`, and every frame before
/// that point has a seq at or below `hi`. A read with `after` in `[lo, hi]` can start
/// there.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadPos {
    pub lo: u64,
    pub hi: u64,
    pub seg: u64,
    pub offset: u64,
}

/// Positions remembered: one per reader that reads from its own place (the uploader, the
/// exporter, a reader re-reading a partial batch), so none of them rescans a segment.
const REMEMBERED: usize = 4;

/// A segment to read: first seq, path, bytes to read up to, where to start.
struct Plan {
    first: u64,
    path: PathBuf,
    end: u64,
    start: u64,
    expect: u64,
}

impl Spool {
    /// Close entries with seq above `after`, in seq order, at most `max`. Reading again
    /// from the last seq returned (or any seq up to the last one scanned) resumes where
    /// the previous read stopped; segments with no Close above `after` are not read.
    pub fn read_closes(&self, after: u64, max: usize) -> Result<Vec<Entry>, SpoolError> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let mut pos = lock(&self.read_pos);
        let plans = {
            let g = lock(&self.inner);
            // The usable position that has scanned furthest.
            let resume = pos
                .iter()
                .filter(|p| {
                    p.lo <= after
                        && after <= p.hi
                        && g.segs.get(&p.seg).is_some_and(|s| p.offset <= s.len)
                })
                .max_by_key(|p| (p.seg, p.offset))
                .copied();
            let from = resume.map_or(0, |p| p.seg);
            g.segs
                .range(from..)
                .filter(|(_, s)| s.max_close > after)
                .map(|(&first, s)| {
                    let (start, expect) = match resume {
                        Some(p) if p.seg == first => (p.offset, p.hi + 1),
                        _ => (HEADER_LEN as u64, first),
                    };
                    Plan {
                        first,
                        path: s.path.clone(),
                        end: s.len,
                        start,
                        expect,
                    }
                })
                .collect::<Vec<_>>()
        };
        let mut last: Option<(u64, u64, u64)> = None; // (seg, end, seq) of the last frame read
        let mut lo = after;
        for plan in plans {
            let file = match File::open(&plan.path) {
                Ok(f) => f,
                // Deleted since: all its Closes were acknowledged.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&plan.path)(e)),
            };
            let mut on_item = |item: Scan<'_>| {
                match item {
                    Scan::Frame { end, frame, .. } => {
                        last = Some((plan.first, end, frame.seq));
                        if frame.seq > after && frame.kind == FrameKind::Close {
                            lo = frame.seq;
                            out.push(Entry {
                                seq: frame.seq,
                                time_ms: frame.time_ms,
                                kind: Kind::Close,
                                key: frame.key,
                                payload: frame.payload.to_vec(),
                            });
                            if out.len() >= max {
                                return ControlFlow::Break(());
                            }
                        }
                    }
                    Scan::Skip { from, to, lost } => {
                        tracing::warn!(
                            segment = plan.first,
                            from,
                            to,
                            lost,
                            "spool: skipped a corrupt region"
                        );
                    }
                    Scan::Tail { from } => {
                        tracing::warn!(segment = plan.first, from, "spool: unreadable tail");
                    }
                    Scan::More { .. } => {}
                }
                ControlFlow::Continue(())
            };
            visit(&file, plan.start, plan.end, plan.expect, &mut on_item)
                .map_err(io_err(&plan.path))?;
            if out.len() >= max {
                break;
            }
        }
        if let Some((seg, offset, hi)) = last {
            let new = ReadPos {
                lo,
                hi,
                seg,
                offset,
            };
            // Most recent last; the oldest is forgotten first.
            pos.retain(|p| !(p.lo == new.lo && p.seg == new.seg && p.offset <= new.offset));
            pos.push(new);
            if pos.len() > REMEMBERED {
                pos.remove(0);
            }
        }
        Ok(out)
    }
}
