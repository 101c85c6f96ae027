//! Encoding a table into the snapshot format (see the parent module).

use std::io::{self, Seek, SeekFrom, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Written, ENTRY_LEN, HEADER_LEN, MAGIC, MAX_DELTA_LINK, VERSION};
use crate::numbers::attrs::Profile;
use crate::numbers::entry::{MAX_CAPABILITIES, MAX_CAPABILITY, MAX_SIP_URI, MAX_USAGE};
use crate::numbers::table::TableView;

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

pub(super) fn too_long(what: &'static str) -> io::Error {
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
/// `out`; used by [`super::write`] and by tests with an in-memory cursor.
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
