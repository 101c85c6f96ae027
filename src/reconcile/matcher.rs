//! The matcher: our records against Microsoft's for one window, and the class of each.
//! Pure: records and parameters in, findings out; no I/O, no clock.
//!
//! # Pairing
//!
//! 1. **By Call-ID.** Records sharing a non-empty Call-ID are paired within it; when one side
//!    has several (forks: each To tag is its own record on our side), the pairs are chosen
//!    greedily by cost: numbers that differ first, then billable against not billable, then
//!    the distance `|Δstart| + |Δduration|`. A Call-ID with more than
//!    [`MAX_GROUP_PAIRS`] candidate pairs (a broken peer reusing one) is left to step 2.
//! 2. **By numbers and time.** What is left is paired when caller and callee are equal
//!    (and not both empty) and the starts are at most `match_window` apart, closest first
//!    (then billable with billable, then the smaller duration difference). The start
//!    compared is the start of the billed part: our answer time (our INVITE time when not
//!    answered) and Microsoft's `startDateTime`.
//!
//! # Classes
//!
//! Only answered calls are billed. Ours is billable when its disposition is `answered`;
//! Microsoft's when its billed duration is above zero. A pair is `matched` when the billed
//! durations differ by at most `tolerance` (exactly at the tolerance still matches; when
//! Microsoft gives whole seconds only, its 500 ms of rounding is added), else
//! `durationMismatch` (an unanswered call of ours paired with a billed Microsoft record is
//! one, with our duration 0). An unpaired billable record is `missingMicrosoft` (ours) or
//! `missingOurs` (theirs). Failed and cancelled calls never make a discrepancy on their own:
//! a pair of unbilled records, or an unbilled record left alone, is `notBillable`, counted
//! but not listed as a discrepancy.
//!
//! # Windows
//!
//! [`reconcile`] pairs every record ending in `[from − edge_margin, to + edge_margin)`, so
//! a call whose two records fall on either side of a window's edge still pairs, then keeps
//! the findings the window owns: a pair or a record of ours by our end time, a lone record
//! of Microsoft's by its end time. Adjacent windows thus count every finding once.

use std::collections::HashMap;

use super::model::{Class, Finding, MatchedBy, Ours, Outcome, Params, Theirs};

/// Candidate pairs above which one Call-ID is not paired by Call-ID (step 2 instead).
pub const MAX_GROUP_PAIRS: usize = 4096;
/// Rounding of Microsoft's whole-second `duration`, added to the tolerance when it is the
/// only duration given.
pub const WHOLE_SECOND_SLACK_MS: u64 = 500;

/// Reconciles the window `[from_ms, to_ms)`: see the module documentation. Records ending
/// outside `[from − edge_margin, to + edge_margin)` are ignored, so callers may pass more.
pub fn reconcile(
    ours: &[Ours],
    theirs: &[Theirs],
    from_ms: u64,
    to_ms: u64,
    p: &Params,
) -> Outcome {
    let lo = from_ms.saturating_sub(p.edge_margin_ms);
    let hi = to_ms.saturating_add(p.edge_margin_ms);
    let ours: Vec<&Ours> = ours
        .iter()
        .filter(|o| (lo..hi).contains(&o.end_ms))
        .collect();
    let theirs: Vec<&Theirs> = theirs
        .iter()
        .filter(|t| (lo..hi).contains(&t.end_ms))
        .collect();
    let (pair_of_ours, by) = pair(&ours, &theirs, p);
    let mut out = Outcome::default();
    let mut paired = vec![false; theirs.len()];
    let owned = |end: u64| (from_ms..to_ms).contains(&end);
    for (i, o) in ours.iter().enumerate() {
        let t = pair_of_ours[i].and_then(|j| {
            paired[j] = true;
            theirs.get(j).copied()
        });
        if owned(o.end_ms) {
            out.findings.extend(finding(Some(o), t, by[i], p));
        }
    }
    for (j, t) in theirs.iter().enumerate() {
        if !paired[j] && owned(t.end_ms) {
            out.findings.extend(finding(None, Some(t), None, p));
        }
    }
    for f in &out.findings {
        out.counts.add(f);
    }
    out
}

/// The class and figures of a pair or a lone record; `None` when both sides are `None`.
fn finding(
    o: Option<&Ours>,
    t: Option<&Theirs>,
    by: Option<MatchedBy>,
    p: &Params,
) -> Option<Finding> {
    let class = match (o, t) {
        (Some(o), Some(t)) if !o.billable && !t.billable() => Class::NotBillable,
        (Some(o), Some(t)) => {
            let slack = if t.whole_seconds {
                p.tolerance_ms.saturating_add(WHOLE_SECOND_SLACK_MS)
            } else {
                p.tolerance_ms
            };
            if o.duration_ms.abs_diff(t.duration_ms) <= slack {
                Class::Matched
            } else {
                Class::DurationMismatch
            }
        }
        (Some(o), None) if o.billable => Class::MissingMicrosoft,
        (None, Some(t)) if t.billable() => Class::MissingOurs,
        _ => Class::NotBillable,
    };
    let diff = o.zip(t).map(|(o, t)| {
        let d = i128::from(t.duration_ms) - i128::from(o.duration_ms);
        i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
    });
    let (call_id, caller, callee, start_ms, end_ms) = match (o, t) {
        (Some(o), _) => (&o.call_id, &o.caller, &o.callee, o.start_ms, o.end_ms),
        (None, Some(t)) => (&t.call_id, &t.caller, &t.callee, t.start_ms, t.end_ms),
        (None, None) => return None,
    };
    Some(Finding {
        class,
        matched_by: by,
        call_id: call_id.clone(),
        microsoft_call_id: t
            .filter(|t| o.is_some_and(|o| o.call_id != t.call_id))
            .map(|t| t.call_id.clone()),
        our_id: o.map(|o| o.id.clone()),
        microsoft_id: t.map(|t| t.id.clone()),
        caller_number: caller.clone(),
        callee_number: callee.clone(),
        start_ms,
        end_ms,
        our_duration_ms: o.map(|o| o.duration_ms),
        microsoft_duration_ms: t.map(|t| t.duration_ms),
        diff_ms: diff,
    })
}

/// For each of ours, the index of its pair in `theirs` and how it was made. (The indices
/// used below are positions in `ours` and `theirs` taken from their own enumeration, never
/// values from the records.)
fn pair(
    ours: &[&Ours],
    theirs: &[&Theirs],
    p: &Params,
) -> (Vec<Option<usize>>, Vec<Option<MatchedBy>>) {
    let mut of_ours: Vec<Option<usize>> = vec![None; ours.len()];
    let mut by = vec![None; ours.len()];
    let mut taken = vec![false; theirs.len()];
    // Step 1: by Call-ID.
    let mut groups: HashMap<&str, (Vec<usize>, Vec<usize>)> = HashMap::new();
    for (i, o) in ours
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.call_id.is_empty())
    {
        groups.entry(o.call_id.as_str()).or_default().0.push(i);
    }
    for (j, t) in theirs.iter().enumerate() {
        if let Some(g) = groups.get_mut(t.call_id.as_str()) {
            g.1.push(j);
        }
    }
    let mut candidates = Vec::new();
    for (os, ts) in groups.values() {
        if os.len().saturating_mul(ts.len()) > MAX_GROUP_PAIRS {
            continue;
        }
        for &i in os {
            for &j in ts {
                let (o, t) = (ours[i], theirs[j]);
                let cost = (
                    o.caller != t.caller || o.callee != t.callee,
                    o.billable != t.billable(),
                    o.start_ms.abs_diff(t.start_ms) + o.duration_ms.abs_diff(t.duration_ms),
                    0,
                );
                candidates.push((cost, i, j));
            }
        }
    }
    assign(
        candidates,
        &mut of_ours,
        &mut taken,
        &mut by,
        MatchedBy::CallId,
    );
    // Step 2: by numbers and start time, among what is left.
    let mut left: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (j, t) in theirs.iter().enumerate() {
        let no_numbers = t.caller.is_empty() && t.callee.is_empty();
        if !taken[j] && !no_numbers {
            left.entry((&t.caller, &t.callee)).or_default().push(j);
        }
    }
    for js in left.values_mut() {
        js.sort_by_key(|&j| theirs[j].start_ms);
    }
    let mut candidates = Vec::new();
    for (i, o) in ours.iter().enumerate() {
        let Some(js) = left.get(&(o.caller.as_str(), o.callee.as_str())) else {
            continue;
        };
        if of_ours[i].is_some() {
            continue;
        }
        let lo = o.start_ms.saturating_sub(p.match_window_ms);
        let first = js.partition_point(|&j| theirs[j].start_ms < lo);
        for &j in js.get(first..).unwrap_or_default() {
            let t = theirs[j];
            if t.start_ms > o.start_ms.saturating_add(p.match_window_ms) {
                break;
            }
            let cost = (
                false,
                o.billable != t.billable(),
                o.start_ms.abs_diff(t.start_ms),
                o.duration_ms.abs_diff(t.duration_ms),
            );
            candidates.push((cost, i, j));
        }
    }
    assign(
        candidates,
        &mut of_ours,
        &mut taken,
        &mut by,
        MatchedBy::Numbers,
    );
    (of_ours, by)
}

type Cost = (bool, bool, u64, u64);

/// Greedy assignment: cheapest candidate first, each record in at most one pair. Ties go to
/// the lower indices, so the result does not depend on hash order.
fn assign(
    mut candidates: Vec<(Cost, usize, usize)>,
    of_ours: &mut [Option<usize>],
    taken: &mut [bool],
    by: &mut [Option<MatchedBy>],
    how: MatchedBy,
) {
    candidates.sort_unstable();
    for (_, i, j) in candidates {
        let free_o = of_ours.get(i).is_some_and(Option::is_none);
        let free_t = taken.get(j).is_some_and(|t| !t);
        if free_o && free_t {
            of_ours[i] = Some(j);
            taken[j] = true;
            by[i] = Some(how);
        }
    }
}
