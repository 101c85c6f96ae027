//! Unit tests of [`super::NumberTable`]: lookups, installs, deltas, views, concurrent
//! readers.

use super::*;

const T1: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";
const T2: &str = "6b65a6a4-8b81-48f6-b38a-088ca65ed389";

fn entry(n: &str, tenant: &str) -> NumberEntry {
    NumberEntry {
        telephone_number: n.into(),
        tenant_id: tenant.into(),
        sip_uri: format!("sip:{n}@t.example;user=phone"),
        usage: "CallingUserAssignment".into(),
        assignment_status: "assigned".into(),
        capabilities: vec!["InboundCalling".into()],
        last_modified_date_time: String::new(),
        removed: None,
    }
}

fn n(s: &str) -> E164 {
    E164::parse(s).unwrap()
}

#[test]
fn starts_empty_and_not_loaded() {
    let t = NumberTable::new();
    assert!(!t.is_loaded());
    assert!(t.is_empty());
    assert!(t.lookup(&n("+14255550100")).is_none());
    let s = t.state();
    assert!(!s.loaded);
    assert_eq!((s.source, s.entries, s.stale_for), (None, 0, None));
}

#[test]
fn replace_all_then_lookup() {
    let t = NumberTable::new();
    let mut bad = entry("4255550199", T1);
    bad.telephone_number = "4255550199".into();
    let mut unassigned = entry("+14255550102", T1);
    unassigned.assignment_status = "unassigned".into();
    let es = [
        entry("+14255550100", T1),
        entry("+14255550101", T2),
        bad,
        unassigned,
    ];
    let a = t.replace_all(&es, Source::Sync);
    assert_eq!(
        a,
        Applied {
            assigned: 2,
            removed: 1,
            skipped: 1,
            len: 2
        }
    );
    assert!(t.is_loaded());
    let got = t.lookup(&n("+14255550101")).unwrap();
    assert_eq!(got.tenant(), T2);
    assert_eq!(got.sip_uri(), "sip:+14255550101@t.example;user=phone");
    assert_eq!(got.usage(), "CallingUserAssignment");
    assert!(got.capabilities().contains(Capabilities::INBOUND_CALLING));
    assert!(!got.capabilities().contains(Capabilities::OUTBOUND_CALLING));
    assert!(t.lookup(&n("+14255550102")).is_none());
    assert!(t.contains(&n("+14255550100")));
    assert_eq!(t.state().skipped_invalid, 1);
    assert_eq!(t.state().source, Some(Source::Sync));
    let view = t.view();
    let mut all: Vec<String> = view.iter().map(|(n, _)| n.to_string()).collect();
    all.sort();
    assert_eq!(all, ["+14255550100", "+14255550101"]);
}

#[test]
fn deltas_add_change_remove() {
    let t = NumberTable::new();
    t.replace_all(&[entry("+1001", T1), entry("+1002", T1)], Source::Sync);
    let before = t.view();
    let mut gone = entry("+1001", "");
    gone.removed = Some(crate::msapi::Removed {
        reason: "deleted".into(),
    });
    let a = t.apply_delta(&[gone, entry("+1002", T2), entry("+1003", T1), entry("x", T1)]);
    assert_eq!((a.assigned, a.removed, a.skipped, a.len), (2, 1, 1, 2));
    assert!(t.lookup(&n("+1001")).is_none());
    assert_eq!(t.lookup(&n("+1002")).unwrap().tenant(), T2);
    assert_eq!(t.lookup(&n("+1003")).unwrap().tenant(), T1);
    assert_eq!(before.len(), 2, "a view keeps its version");
    assert_eq!(before.get(&n("+1002")).unwrap().tenant().as_str(), T1);
    assert_eq!(t.state().skipped_invalid, 1);
}

#[test]
fn delta_on_unloaded_table_does_not_mark_it_loaded() {
    let t = NumberTable::new();
    t.apply_delta(&[entry("+1001", T1)]);
    assert!(!t.is_loaded());
    assert_eq!(t.len(), 1);
}

#[test]
fn readers_run_during_writes() {
    let t = NumberTable::new();
    let es: Vec<_> = (0..20_000)
        .map(|i| entry(&format!("+1425{i:07}"), T1))
        .collect();
    t.replace_all(&es, Source::Sync);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lookups = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let (t, stop, lookups) = (t.clone(), stop.clone(), lookups.clone());
        std::thread::spawn(move || {
            let mut seen = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seen += u64::from(t.lookup(&n("+14250000000")).is_some());
                lookups.fetch_add(1, Ordering::Relaxed);
            }
            seen
        })
    };
    // On a loaded machine the reader may not have run yet: wait for it, so the writes
    // really overlap reads (and the test cannot fail for scheduling reasons).
    let wait_for_more = |than: u64| {
        while lookups.load(Ordering::Relaxed) <= than {
            std::thread::yield_now();
        }
    };
    wait_for_more(0);
    for i in 0..50 {
        let e = entry(&format!("+1426{i:07}"), T2);
        t.apply_delta(std::slice::from_ref(&e));
    }
    wait_for_more(lookups.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(t.len(), 20_050);
}

#[test]
fn replaced_versions_are_freed_by_the_writer_once_unheld() {
    let t = NumberTable::new();
    t.replace_all(&[entry("+1001", T1)], Source::Sync);
    let retired = |t: &NumberTable| lock(&t.inner.writer).retired.len();
    assert_eq!(retired(&t), 0, "nothing held the replaced version");
    let view = t.view();
    t.apply_delta(&[entry("+1002", T1)]);
    assert_eq!(retired(&t), 1, "kept while a view holds it");
    assert_eq!(view.len(), 1);
    drop(view);
    t.apply_delta(&[entry("+1003", T1)]);
    assert_eq!(retired(&t), 0, "freed at the next write");
    assert_eq!(t.len(), 3);
}
