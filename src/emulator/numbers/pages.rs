//! Listing and delta pages, as JSON, and the tokens inside their links.

use std::borrow::Cow;
use std::ops::Bound;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{unix_secs, DeltaPosition, PageError, Row, Served, Table};
use crate::msapi::wire::{DELTA_TOKEN, NUMBERS_DELTA_PATH, NUMBERS_PATH, SKIP_TOKEN};
use crate::sip::number::E164;

impl Table {
    fn view<'a>(&'a self, number: E164, row: &'a Row) -> Item<'a> {
        Item::Entry(EntryView {
            telephone_number: number,
            tenant_id: self.strings.get(row.tenant),
            sip_uri: self.sip_uri(number, row),
            usage: self.strings.get(row.usage),
            assignment_status: self.strings.get(row.status),
            capabilities: self.caps.get(row.caps as usize).map_or(&[], |c| c),
            last_modified_date_time: humantime::format_rfc3339_millis(
                UNIX_EPOCH + Duration::from_millis(row.modified_ms),
            )
            .to_string(),
        })
    }

    /// A page of the full listing, as JSON: the first page, or the one after `skip`.
    pub(crate) fn full_page(
        &self,
        base: &str,
        top: usize,
        skip: Option<&str>,
        now: SystemTime,
    ) -> Result<(Vec<u8>, Served), PageError> {
        let (start, top, after) = match skip {
            None => (self.seq, top, None),
            Some(t) => match fields(t).as_deref() {
                Some(["f", start, top, digits]) => {
                    let after =
                        E164::parse(&format!("+{digits}")).map_err(|_| PageError::BadToken)?;
                    (num(start)?, num_usize(top)?, Some(after))
                }
                _ => return Err(PageError::BadToken),
            },
        };
        if start > self.seq {
            return Err(PageError::BadToken);
        }
        let top = top.clamp(1, self.max_page);
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut range = self.rows.range((lower, Bound::Unbounded));
        let page: Vec<(E164, &Row)> = range.by_ref().take(top).map(|(n, r)| (*n, r)).collect();
        let more = range.next().is_some();
        let (next_link, delta_link) = match page.last() {
            Some((last, _)) if more => (
                Some(format!(
                    "{base}{NUMBERS_PATH}?{SKIP_TOKEN}=f.{start}.{top}.{}",
                    last.digits()
                )),
                None,
            ),
            _ => (None, Some(self.delta_link(base, start, now))),
        };
        let served = Served {
            entries: page.len(),
            last: delta_link.is_some(),
        };
        let body = PageView {
            value: page.iter().map(|(n, r)| self.view(*n, r)).collect(),
            next_link,
            delta_link,
        };
        Ok((serde_json::to_vec(&body).unwrap_or_default(), served))
    }

    /// A page of changes: the first one after a delta token, or the one after a delta skip
    /// token.
    pub(crate) fn delta_page(
        &self,
        base: &str,
        top: usize,
        position: DeltaPosition<'_>,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<(Vec<u8>, Served), PageError> {
        let (after, upto, top, issued) = match position {
            DeltaPosition::Token(t) => match fields(t).as_deref() {
                Some([epoch, since, issued]) => {
                    // An unreadable delta token is an unknown one: 410, resync.
                    let unreadable = |_| PageError::Gone("unreadable delta token");
                    let since = num(since).map_err(unreadable)?;
                    let issued = num(issued).map_err(unreadable)?;
                    self.check(
                        num(epoch).map_err(unreadable)?,
                        since,
                        issued,
                        now,
                        lifetime,
                    )?;
                    (since, self.seq, top, unix_secs(now))
                }
                _ => return Err(PageError::Gone("unreadable delta token")),
            },
            DeltaPosition::Skip(t) => match fields(t).as_deref() {
                Some(["d", epoch, after, upto, top, issued]) => {
                    let (after, upto, issued) = (num(after)?, num(upto)?, num(issued)?);
                    self.check(num(epoch)?, after, issued, now, lifetime)?;
                    if upto < after || upto > self.seq {
                        return Err(PageError::BadToken);
                    }
                    (after, upto, num_usize(top)?, issued)
                }
                _ => return Err(PageError::BadToken),
            },
        };
        let top = top.clamp(1, self.max_page);
        let mut range = self
            .log
            .range((Bound::Excluded(after), Bound::Included(upto)));
        let page: Vec<(u64, E164)> = range.by_ref().take(top).map(|(s, n)| (*s, *n)).collect();
        let more = range.next().is_some();
        let (next_link, delta_link) = match page.last() {
            Some((last, _)) if more => (
                Some(format!(
                    "{base}{NUMBERS_DELTA_PATH}?{SKIP_TOKEN}=d.{}.{last}.{upto}.{top}.{issued}",
                    self.epoch
                )),
                None,
            ),
            _ => (None, Some(self.delta_link(base, upto, now))),
        };
        let served = Served {
            entries: page.len(),
            last: delta_link.is_some(),
        };
        let value = page
            .iter()
            .map(|(_, n)| match self.rows.get(n) {
                Some(row) => self.view(*n, row),
                None => Item::Removed(RemovedView {
                    telephone_number: *n,
                    removed: RemovedReason { reason: "deleted" },
                }),
            })
            .collect();
        let body = PageView {
            value,
            next_link,
            delta_link,
        };
        Ok((serde_json::to_vec(&body).unwrap_or_default(), served))
    }

    fn delta_link(&self, base: &str, seq: u64, now: SystemTime) -> String {
        format!(
            "{base}{NUMBERS_DELTA_PATH}?{DELTA_TOKEN}={}.{seq}.{}",
            self.epoch,
            unix_secs(now)
        )
    }

    fn check(
        &self,
        epoch: u64,
        since: u64,
        issued: u64,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<(), PageError> {
        if epoch != self.epoch {
            return Err(PageError::Gone(
                "delta token expired (reset or another emulator run)",
            ));
        }
        if since < self.floor || since > self.seq {
            return Err(PageError::Gone(
                "changes since the delta token are no longer retained",
            ));
        }
        if unix_secs(now).saturating_sub(issued) > lifetime.as_secs() {
            return Err(PageError::Gone("delta token older than its lifetime"));
        }
        Ok(())
    }
}

fn fields(token: &str) -> Option<Vec<&str>> {
    (token.len() <= 128).then(|| token.split('.').collect())
}

fn num(s: &str) -> Result<u64, PageError> {
    s.parse().map_err(|_| PageError::BadToken)
}

fn num_usize(s: &str) -> Result<usize, PageError> {
    s.parse().map_err(|_| PageError::BadToken)
}

#[derive(Serialize)]
struct PageView<'a> {
    value: Vec<Item<'a>>,
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", skip_serializing_if = "Option::is_none")]
    delta_link: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Entry(EntryView<'a>),
    Removed(RemovedView),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryView<'a> {
    telephone_number: E164,
    tenant_id: &'a str,
    sip_uri: Cow<'a, str>,
    usage: &'a str,
    assignment_status: &'a str,
    capabilities: &'a [String],
    last_modified_date_time: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RemovedView {
    telephone_number: E164,
    #[serde(rename = "@removed")]
    removed: RemovedReason,
}

#[derive(Serialize)]
struct RemovedReason {
    reason: &'static str,
}
