//! What the matcher works on and produces: the two sides' records as it sees them
//! ([`Ours`], [`Theirs`]), its parameters, and its findings with their classes and counts.
//! The rules that decide them are in [`super::matcher`].

use serde::{Serialize, Serializer};

use crate::cdr::{rfc3339_ms, Disposition};

/// How records are paired and judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Largest start difference of a pair made by numbers (default 5 s).
    pub match_window_ms: u64,
    /// Largest billed-duration difference of a `matched` pair (default 1 s).
    pub tolerance_ms: u64,
    /// How far outside a window records are still pairing candidates (default 5 min).
    pub edge_margin_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            match_window_ms: 5000,
            tolerance_ms: 1000,
            edge_margin_ms: 300_000,
        }
    }
}

impl Params {
    /// The parameters of `[reconcile]`.
    pub fn from_config(r: &crate::config::Reconcile) -> Params {
        Params {
            match_window_ms: super::ms(r.match_window.0),
            tolerance_ms: super::ms(r.tolerance.0),
            edge_margin_ms: super::ms(r.edge_margin.0),
        }
    }
}

/// One of our records as the matcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ours {
    /// Our record id.
    pub id: String,
    /// SIP Call-ID.
    pub call_id: String,
    /// Calling number.
    pub caller: String,
    /// Called number.
    pub callee: String,
    /// Start of the billed part: the answer, or the INVITE when not answered (UTC ms).
    pub start_ms: u64,
    /// End (UTC ms).
    pub end_ms: u64,
    /// Billed milliseconds (0 when not answered).
    pub duration_ms: u64,
    /// Answered.
    pub billable: bool,
}

impl From<&crate::cdr::CallRecord> for Ours {
    fn from(r: &crate::cdr::CallRecord) -> Ours {
        let billable = r.disposition == Disposition::Answered;
        Ours {
            id: r.id.clone(),
            call_id: r.call_id.clone(),
            caller: r.caller_number.clone(),
            callee: r.callee_number.clone(),
            start_ms: r.answer_ms.unwrap_or(r.start_ms),
            end_ms: r.end_ms,
            duration_ms: if billable { r.duration_ms } else { 0 },
            billable,
        }
    }
}

/// One of Microsoft's records as the matcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theirs {
    /// Microsoft's record id.
    pub id: String,
    /// SIP Call-ID.
    pub call_id: String,
    /// Calling number.
    pub caller: String,
    /// Called number.
    pub callee: String,
    /// `startDateTime` (UTC ms).
    pub start_ms: u64,
    /// `endDateTime` (UTC ms).
    pub end_ms: u64,
    /// Billed milliseconds: `durationMs`, else `duration` × 1000.
    pub duration_ms: u64,
    /// Only whole seconds were given (no `durationMs`).
    pub whole_seconds: bool,
}

impl Theirs {
    /// The matcher's view of `r`; `None` when its times do not read as RFC 3339.
    pub fn from_record(r: &crate::msapi::CallRecord) -> Option<Theirs> {
        Some(Theirs {
            id: r.id.clone(),
            call_id: r.call_id.clone(),
            caller: r.caller_number.clone(),
            callee: r.callee_number.clone(),
            start_ms: super::parse_ms(&r.start_date_time)?,
            end_ms: super::parse_ms(&r.end_date_time)?,
            duration_ms: r
                .duration_ms
                .unwrap_or_else(|| r.duration.saturating_mul(1000)),
            whole_seconds: r.duration_ms.is_none(),
        })
    }

    /// Billed: a duration above zero.
    pub fn billable(&self) -> bool {
        self.duration_ms > 0
    }
}

/// What a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Class {
    /// Both sides have the call with durations within the tolerance.
    Matched,
    /// Both sides have the call; the billed durations differ beyond the tolerance.
    DurationMismatch,
    /// Microsoft bills a call we have no record of.
    MissingOurs,
    /// We have an answered call Microsoft has no record of.
    MissingMicrosoft,
    /// Unanswered on both sides, or an unanswered call on one side only: nothing billed.
    NotBillable,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 5] = [
        Class::Matched,
        Class::DurationMismatch,
        Class::MissingOurs,
        Class::MissingMicrosoft,
        Class::NotBillable,
    ];

    /// The camelCase name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Matched => "matched",
            Class::DurationMismatch => "durationMismatch",
            Class::MissingOurs => "missingOurs",
            Class::MissingMicrosoft => "missingMicrosoft",
            Class::NotBillable => "notBillable",
        }
    }

    /// True for the three classes that need a person to look.
    pub fn is_discrepancy(self) -> bool {
        matches!(
            self,
            Class::DurationMismatch | Class::MissingOurs | Class::MissingMicrosoft
        )
    }
}

/// How a pair was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MatchedBy {
    /// Same Call-ID.
    CallId,
    /// Same numbers, starts within the match window.
    Numbers,
}

/// One call as reconciled: a pair, or a record of one side alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Its class.
    pub class: Class,
    /// How the pair was made; absent for a record alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<MatchedBy>,
    /// The Call-ID (ours when we have the record).
    pub call_id: String,
    /// Microsoft's Call-ID when it differs from ours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microsoft_call_id: Option<String>,
    /// Our record id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub our_id: Option<String>,
    /// Microsoft's record id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microsoft_id: Option<String>,
    /// Calling number.
    pub caller_number: String,
    /// Called number.
    pub callee_number: String,
    /// Start of the billed part (ours when we have the record), RFC 3339.
    #[serde(rename = "start", serialize_with = "as_rfc3339")]
    pub start_ms: u64,
    /// End (ours when we have the record), RFC 3339.
    #[serde(rename = "end", serialize_with = "as_rfc3339")]
    pub end_ms: u64,
    /// Our billed milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub our_duration_ms: Option<u64>,
    /// Microsoft's billed milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microsoft_duration_ms: Option<u64>,
    /// Microsoft's minus ours, for pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_ms: Option<i64>,
}

fn as_rfc3339<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_ms(*ms))
}

impl Finding {
    /// How much billing it is about: the duration difference of a pair, the billed duration
    /// of a record alone. Sorts the worst first.
    pub fn weight_ms(&self) -> u64 {
        match self.diff_ms {
            Some(d) => d.unsigned_abs(),
            None => self
                .our_duration_ms
                .or(self.microsoft_duration_ms)
                .unwrap_or(0),
        }
    }
}

/// Findings per class, and the billed totals of each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// [`Class::Matched`].
    pub matched: u64,
    /// [`Class::DurationMismatch`].
    pub duration_mismatch: u64,
    /// [`Class::MissingOurs`].
    pub missing_ours: u64,
    /// [`Class::MissingMicrosoft`].
    pub missing_microsoft: u64,
    /// [`Class::NotBillable`].
    pub not_billable: u64,
    /// Billed milliseconds on our side, over the findings of the window.
    pub our_billed_ms: u64,
    /// Billed milliseconds on Microsoft's side, over the findings of the window.
    pub microsoft_billed_ms: u64,
}

impl Counts {
    /// The count of `class`.
    pub fn get(&self, class: Class) -> u64 {
        match class {
            Class::Matched => self.matched,
            Class::DurationMismatch => self.duration_mismatch,
            Class::MissingOurs => self.missing_ours,
            Class::MissingMicrosoft => self.missing_microsoft,
            Class::NotBillable => self.not_billable,
        }
    }

    /// Discrepancies: mismatches and records missing on either side.
    pub fn discrepancies(&self) -> u64 {
        self.duration_mismatch + self.missing_ours + self.missing_microsoft
    }

    pub(crate) fn add(&mut self, f: &Finding) {
        let c = match f.class {
            Class::Matched => &mut self.matched,
            Class::DurationMismatch => &mut self.duration_mismatch,
            Class::MissingOurs => &mut self.missing_ours,
            Class::MissingMicrosoft => &mut self.missing_microsoft,
            Class::NotBillable => &mut self.not_billable,
        };
        *c += 1;
        self.our_billed_ms += f.our_duration_ms.unwrap_or(0);
        self.microsoft_billed_ms += f.microsoft_duration_ms.unwrap_or(0);
    }
}

/// What a window's reconciliation found: every finding it owns, and their counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Per class.
    pub counts: Counts,
    /// One per call, pairs and lone records alike.
    pub findings: Vec<Finding>,
}
