//! Tests of the numbers table: paging, the change log, delta tokens and retention, without
//! sockets or a clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

use super::{DeltaPosition, PageError, Table};
use crate::emulator::seed::NumberSpec;
use crate::sip::number::E164;

const T1: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";
const T2: &str = "6b65a6a4-8b81-48f6-b38a-088ca65ed389";
const BASE: &str = "http://emu";
const LIFE: Duration = Duration::from_secs(3600);

fn spec(n: u32, tenant: &str) -> NumberSpec {
    let number = format!("+1425555{n:04}");
    let uri = format!("sip:{number}@t.example.com;user=phone");
    NumberSpec::new(&number, tenant, &uri, "CallingUserAssignment").expect("valid spec")
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn table(n: u32) -> Table {
    let mut t = Table::new(1000, 1000, 7);
    let specs: Vec<NumberSpec> = (0..n).map(|i| spec(i, T1)).collect();
    t.seed(&specs, now());
    t
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("page is JSON")
}

/// The query value of `name` in a link.
fn param<'a>(link: &'a str, name: &str) -> &'a str {
    link.split_once(&format!("{name}="))
        .map(|(_, v)| v.split('&').next().unwrap_or(v))
        .expect("parameter in link")
}

/// Reads a whole listing; returns the numbers and the delta token.
fn list_all(t: &Table, top: usize) -> (Vec<String>, String, usize) {
    let (mut numbers, mut skip, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let (body, _) = t
            .full_page(BASE, top, skip.as_deref(), now())
            .expect("page");
        pages += 1;
        let v = json(&body);
        for e in v["value"].as_array().expect("value") {
            numbers.push(e["telephoneNumber"].as_str().expect("number").to_owned());
        }
        if let Some(next) = v["@odata.nextLink"].as_str() {
            assert!(next.starts_with("http://emu/v1.0/operatorConnect/numbers?"));
            skip = Some(param(next, "$skiptoken").to_owned());
            continue;
        }
        let delta = v["@odata.deltaLink"]
            .as_str()
            .expect("deltaLink on the last page");
        assert!(delta.starts_with("http://emu/v1.0/operatorConnect/numbers/delta?"));
        return (numbers, param(delta, "$deltatoken").to_owned(), pages);
    }
}

/// Reads a whole delta; returns the entries and the next delta token.
fn delta_all(t: &Table, token: &str, top: usize) -> Result<(Vec<Value>, String), PageError> {
    let mut entries = Vec::new();
    let (mut body, _) = t.delta_page(BASE, top, DeltaPosition::Token(token), now(), LIFE)?;
    loop {
        let v = json(&body);
        entries.extend(v["value"].as_array().expect("value").iter().cloned());
        match v["@odata.nextLink"].as_str() {
            Some(next) => {
                let skip = param(next, "$skiptoken").to_owned();
                body = t
                    .delta_page(BASE, top, DeltaPosition::Skip(&skip), now(), LIFE)?
                    .0;
            }
            None => {
                let link = v["@odata.deltaLink"].as_str().expect("deltaLink");
                return Ok((entries, param(link, "$deltatoken").to_owned()));
            }
        }
    }
}

#[test]
fn full_listing_pages_every_number_once_in_order() {
    let t = table(2500);
    let (numbers, _, pages) = list_all(&t, 1000);
    assert_eq!(pages, 3);
    assert_eq!(numbers.len(), 2500);
    let mut sorted = numbers.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, numbers, "sorted, no duplicates");
}

#[test]
fn entries_carry_every_contract_field() {
    let t = table(1);
    let (body, served) = t.full_page(BASE, 10, None, now()).expect("page");
    assert!(served.last);
    let e = &json(&body)["value"][0];
    assert_eq!(e["telephoneNumber"], "+14255550000");
    assert_eq!(e["tenantId"], T1);
    assert_eq!(e["sipUri"], "sip:+14255550000@t.example.com;user=phone");
    assert_eq!(e["usage"], "CallingUserAssignment");
    assert_eq!(e["assignmentStatus"], "assigned");
    assert_eq!(e["capabilities"][1], "OutboundCalling");
    assert_eq!(e["lastModifiedDateTime"], "2023-11-14T22:13:20.000Z");
}

#[test]
fn page_size_is_clamped_by_the_table() {
    let mut t = Table::new(10, 2, 7);
    t.seed(&[spec(1, T1), spec(2, T1), spec(3, T1)], now());
    let (body, served) = t.full_page(BASE, 1000, None, now()).expect("page");
    assert_eq!(served.entries, 2);
    assert!(json(&body)["@odata.nextLink"].is_string());
}

#[test]
fn delta_reports_each_changed_number_once_in_its_latest_state() {
    let mut t = table(10);
    let (_, token, _) = list_all(&t, 1000);
    t.upsert(&spec(3, T2), now()); // changed
    t.upsert(&spec(3, T1), now()); // changed back: reported once
    t.upsert(&spec(20, T1), now()); // added
    assert!(t.remove(E164::parse("+14255550005").expect("number"))); // removed
    t.upsert(&spec(21, T1), now());
    assert!(t.remove(E164::parse("+14255550021").expect("number"))); // added then removed
    let (entries, next) = delta_all(&t, &token, 2).expect("delta");
    let shown: Vec<String> = entries
        .iter()
        .map(|e| {
            let n = e["telephoneNumber"].as_str().expect("number");
            match e.get("@removed") {
                Some(r) => format!("-{n}:{}", r["reason"].as_str().unwrap_or("")),
                None => format!("+{n}:{}", e["tenantId"].as_str().unwrap_or("")),
            }
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            format!("++14255550003:{T1}"),
            format!("++14255550020:{T1}"),
            "-+14255550005:deleted".to_string(),
            "-+14255550021:deleted".to_string(),
        ]
    );
    let (again, _) = delta_all(&t, &next, 2).expect("empty delta");
    assert!(again.is_empty(), "nothing changed since the new token");
}

#[test]
fn readding_a_removed_number_reports_it_present() {
    let mut t = table(3);
    let (_, token, _) = list_all(&t, 1000);
    let n = E164::parse("+14255550001").expect("number");
    assert!(t.remove(n));
    assert!(!t.remove(n), "already gone");
    assert!(t.upsert(&spec(1, T2), now()), "added again");
    let (entries, _) = delta_all(&t, &token, 100).expect("delta");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["tenantId"], T2);
    assert!(entries[0].get("@removed").is_none());
}

#[test]
fn tokens_expire_by_retention_epoch_and_age() {
    let mut t = Table::new(3, 1000, 7);
    t.seed(&[spec(0, T1)], now());
    let (_, old, _) = list_all(&t, 10);
    for i in 1..=3 {
        t.upsert(&spec(i, T1), now());
    }
    assert!(delta_all(&t, &old, 10).is_ok(), "3 changes fit the log");
    t.upsert(&spec(4, T1), now());
    assert!(
        matches!(delta_all(&t, &old, 10), Err(PageError::Gone(_))),
        "first change discarded"
    );
    let (_, fresh, _) = list_all(&t, 10);
    let later = now() + LIFE + Duration::from_secs(1);
    assert!(matches!(
        t.delta_page(BASE, 10, DeltaPosition::Token(&fresh), later, LIFE),
        Err(PageError::Gone(_))
    ));
    t.expire_delta_tokens();
    assert!(matches!(delta_all(&t, &fresh, 10), Err(PageError::Gone(_))));
    for bad in ["", "x", "1.2", "7.99.1700000000", "7.1.x"] {
        assert!(
            matches!(delta_all(&t, bad, 10), Err(PageError::Gone(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn malformed_skip_tokens_are_bad_requests() {
    let t = table(3);
    for bad in ["", "f.0.10", "f.0.10.abc", "f.99.10.14255550000", "d.1.2.3"] {
        assert_eq!(
            t.full_page(BASE, 10, Some(bad), now()).err(),
            Some(PageError::BadToken),
            "{bad:?}"
        );
    }
    assert_eq!(
        t.delta_page(BASE, 10, DeltaPosition::Skip("f.0.1.1"), now(), LIFE)
            .err(),
        Some(PageError::BadToken)
    );
}

#[test]
fn churn_changes_go_through_the_log() {
    let mut t = table(50);
    let (before, token, _) = list_all(&t, 1000);
    let mut rng = StdRng::seed_from_u64(42);
    let made = (0..30).filter(|_| t.churn(&mut rng, now())).count();
    assert!(made > 0);
    let (entries, _) = delta_all(&t, &token, 7).expect("delta");
    assert!(!entries.is_empty() && entries.len() <= made);
    // Applying the delta to the old listing gives the new listing.
    let mut set: std::collections::BTreeSet<String> = before.into_iter().collect();
    for e in &entries {
        let n = e["telephoneNumber"].as_str().expect("number").to_owned();
        if e.get("@removed").is_some() {
            set.remove(&n);
        } else {
            set.insert(n);
        }
    }
    let (after, _, _) = list_all(&t, 1000);
    assert_eq!(set.into_iter().collect::<Vec<_>>(), after);
}

#[test]
fn churn_on_an_empty_table_adds() {
    let mut t = Table::new(10, 10, 1);
    assert!(t.churn(&mut StdRng::seed_from_u64(1), now()));
    assert_eq!(t.len(), 1);
}
