//! Every row of `shared/corpus/EXPECTED.tsv` (RFC 4475 and RFC 5118 torture messages) is a
//! test. Strict rows must match exactly. For rows the table marks `either`, ocedge's choice
//! is pinned in `LENIENT` below with the reason, so a change of behaviour is a visible diff.

mod common;

use ocedge::inspect::{inspect_bytes, Transport};
use ocedge::sip::Limits;

/// Our decision for every `either` cell: (file, parse, action, reply status), and why.
const LENIENT: &[(&str, &str, &str, Option<u16>, &str)] = &[
    ("rfc4475/lwsstart.dat", "ok", "forward", None,
     "runs of SP between request-line elements are tolerated: unambiguous, common in the wild"),
    ("rfc4475/trws.dat", "ok", "forward", None, "trailing SP on the request line is tolerated"),
    ("rfc4475/escruri.dat", "ok", "forward", None,
     "escaped headers in a Request-URI are well-formed URI syntax; the proxy does not act on them"),
    ("rfc4475/baddate.dat", "ok", "forward", None, "Date is not a header a proxy interprets"),
    ("rfc4475/regbadct.dat", "ok", "forward", None,
     "an addr-spec Contact with a parameter parses as a header parameter (RFC 3261 §20.10)"),
    ("rfc4475/badaspec.dat", "error", "reply", Some(400),
     "spaces inside an addr-spec make the To URI unparseable"),
    ("rfc4475/baddn.dat", "error", "reply", Some(400),
     "a display name of non-token characters must be quoted"),
    ("rfc4475/insuf.dat", "error", "reply", Some(400),
     "missing From/To/Call-ID/Max-Forwards: the core headers do not parse"),
    ("rfc4475/multi01.dat", "error", "reply", Some(400),
     "a second CSeq/Call-ID/To/From makes the request ambiguous"),
    ("rfc4475/mcl01.dat", "error", "reply", Some(400),
     "two different Content-Length values: refused by the structural parser"),
    ("rfc4475/unksm2.dat", "ok", "forward", None,
     "unknown schemes in From/To/Contact are the endpoints' business"),
    ("rfc4475/regaut01.dat", "ok", "forward", None, "authorization is not the edge's concern"),
    ("rfc4475/cparam01.dat", "ok", "forward", None, "Contact parameters are opaque to a proxy"),
    ("rfc4475/cparam02.dat", "ok", "forward", None, "URI parameters are opaque to a proxy"),
    ("rfc4475/regescrt.dat", "ok", "forward", None, "escaped URI headers are valid URI syntax"),
    ("rfc5118/ipv6-bug-abnf-3-colons.dat", "error", "reply", Some(400),
     "three colons is not an IPv6 address (std::net::Ipv6Addr refuses it)"),
];

#[test]
fn torture_corpus_matches_expectations() {
    let shared = common::shared_dir();
    let table = std::fs::read_to_string(shared.join("corpus/EXPECTED.tsv")).unwrap();
    let mut failures = Vec::new();
    let mut rows = 0;
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let [file, _source, parse, action, status, note] = cols[..] else {
            panic!("bad EXPECTED.tsv row: {line}");
        };
        rows += 1;
        let data = std::fs::read(shared.join("corpus").join(file)).unwrap();
        let reports = inspect_bytes(file, &data, Transport::Udp, &Limits::DEFAULT);
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        let got = (r.parse, r.action, r.reply_status);
        let lenient = LENIENT.iter().find(|l| l.0 == file);
        if parse == "either" || action == "either" {
            let Some(&(_, p, a, s, _why)) = lenient else {
                failures.push(format!("{file}: lenient row without a documented choice"));
                continue;
            };
            // Our pinned choice must itself respect every strict cell of the row.
            let strict_ok = (parse == "either" || (parse == "accept") == (p == "ok"))
                && (action == "either" || action == a)
                && (a != "reply"
                    || status == "-"
                    || s.map(|v| v.to_string()).as_deref() == Some(status)
                    || action == "either");
            if !strict_ok {
                failures.push(format!(
                    "{file}: pinned choice contradicts the table ({note})"
                ));
            }
            if got != (p, a, s) {
                failures.push(format!(
                    "{file}: got {got:?}, pinned {:?} ({note})",
                    (p, a, s)
                ));
            }
            continue;
        }
        assert!(
            lenient.is_none(),
            "{file} is strict but has a lenient entry"
        );
        let want_parse = if parse == "accept" { "ok" } else { "error" };
        let want_status = status.parse::<u16>().ok().filter(|_| action == "reply");
        if got != (want_parse, action, want_status) {
            failures.push(format!(
                "{file}: got {got:?} want {:?} ({note}); error={:?} reason={:?}",
                (want_parse, action, want_status),
                r.error,
                r.reason
            ));
        }
    }
    assert_eq!(rows, 62, "EXPECTED.tsv row count changed");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
