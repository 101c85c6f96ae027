//! Who called whom: the calling and called numbers, tenant and Teams SIP URI a record
//! carries, read by the policy the tracker wraps.

use crate::config::Side;
use crate::proxy::numbers_policy::{called_number, calling_number, Attribution, NumberPolicy};
use crate::proxy::policy::AllowAll;
use crate::sip::Message;

/// Reads an out-of-dialog INVITE received on a side into an [`Attribution`].
pub trait Attribute {
    /// The attribution of `msg`, received on `side`.
    fn attribute(&self, side: Side, msg: &Message) -> Attribution;
}

impl Attribute for NumberPolicy {
    fn attribute(&self, side: Side, msg: &Message) -> Attribution {
        NumberPolicy::attribute(self, side, msg)
    }
}

/// Without the number table: the numbers as the URIs write them (global numbers only, no
/// default country code), no tenant, no SIP URI, no emergency flag.
impl Attribute for AllowAll {
    fn attribute(&self, _side: Side, msg: &Message) -> Attribution {
        let text = |n: Option<crate::sip::number::E164>| {
            n.map(|n| n.as_str().to_owned()).unwrap_or_default()
        };
        Attribution {
            caller: text(calling_number(msg, None)),
            callee: text(called_number(msg, None)),
            ..Attribution::default()
        }
    }
}
