//! Decoding a snapshot file (see the parent module): every check before any belief.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Loaded, SnapshotError, ENTRY_LEN, HEADER_LEN, MAGIC, MAX_DELTA_LINK, VERSION};
use crate::numbers::attrs::{Template, TenantId, UriForm};
use crate::numbers::batch::Batch;
use crate::numbers::entry::{MAX_CAPABILITIES, MAX_CAPABILITY, MAX_SIP_URI, MAX_USAGE};
use crate::numbers::shards::MAX_KEY;

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
