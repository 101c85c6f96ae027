//! Peer addresses (`[[microsoft.targets]]` and `[[carrier.sbcs]]` `addr`): an IP literal with
//! its port (`52.114.1.2:5061`, `[2603:1063::1]:5061`), or a DNS name with its port
//! (`sip.pstnhub.microsoft.com:5061`), looked up when the configuration is loaded: at start,
//! by `ocedge check-config`, and at every reload (SIGHUP or `POST /admin/reload`); and again
//! every `node.dns_refresh` while running (`app::reload::Reloader::refresh_peers`), where a
//! changed answer moves the peer and a failed lookup keeps its last address. A name that does not resolve is a configuration error
//! with its key path: the daemon does not start, a reload is refused and the running
//! addresses stay. Of the name's addresses the first IPv4 one is used, else the first IPv6
//! one (Microsoft's names answer with one address per query).

use std::net::{SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Deserializer};

/// Serde `deserialize_with` for a peer address.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    resolve(&s).map_err(serde::de::Error::custom)
}

/// The address `text` names; see the module documentation.
pub fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = split(text).ok_or_else(|| {
        format!("invalid address {text:?}: expected IP:PORT, [IPv6]:PORT or HOST:PORT")
    })?;
    resolve_name(host, port)
}

/// Looks `host` up: its first IPv4 address with `port`, else its first IPv6 one.
pub fn resolve_name(host: &str, port: u16) -> Result<SocketAddr, String> {
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| format!("{host:?} has no address"))
}

/// Records, in `cfg`, the DNS name each peer address of `table` (the file it was decoded
/// from, as parsed for the syntax check) was written with, for the periodic lookups.
pub(super) fn fill_hosts(cfg: &mut super::Config, table: &toml::Table) {
    let names = |outer: &str, inner: &str| -> Vec<Option<String>> {
        let list = table
            .get(outer)
            .and_then(|t| t.get(inner))
            .and_then(|v| v.as_array());
        list.map(|l| {
            l.iter()
                .map(|e| {
                    let addr = e.get("addr")?.as_str()?;
                    if addr.parse::<SocketAddr>().is_ok() {
                        return None;
                    }
                    split(addr).map(|(h, _)| h.to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
    };
    if let Some(m) = cfg.microsoft.as_mut() {
        for (t, h) in m.targets.iter_mut().zip(names("microsoft", "targets")) {
            t.host = h;
        }
    }
    if let Some(c) = cfg.carrier.as_mut() {
        for (s, h) in c.sbcs.iter_mut().zip(names("carrier", "sbcs")) {
            s.host = h;
        }
    }
}

/// `HOST:PORT` with a DNS name (RFC 1123 labels) and a non-zero port.
fn split(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let labels_ok = host.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    // An all-numeric dotted host is a malformed IP literal, not a name.
    let numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    (labels_ok && !numeric && host.len() <= 253).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_taken_as_they_are() {
        assert_eq!(
            resolve("52.114.1.2:5061"),
            Ok("52.114.1.2:5061".parse().unwrap())
        );
        assert_eq!(
            resolve("[2603:1063::1]:5061"),
            Ok("[2603:1063::1]:5061".parse().unwrap())
        );
    }

    #[test]
    fn names_resolve_ipv4_first() {
        // `localhost` is in /etc/hosts: no network needed.
        assert_eq!(
            resolve("localhost:5070"),
            Ok("127.0.0.1:5070".parse().unwrap())
        );
    }

    #[test]
    fn malformed_addresses_say_what_is_expected() {
        for bad in [
            "52.114.1.2",
            "sip.example.com",
            "sip.example.com:0",
            "sip.example.com:70000",
            "1.2.3:5060",
            "-bad.example.com:5060",
            "under_score.example.com:5060",
            "a..b:5060",
            ":5060",
            "2603:1063::1:5061",
        ] {
            let e = resolve(bad).expect_err(bad);
            assert!(e.contains("expected IP:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it() {
        // `.invalid` never resolves (RFC 2606).
        let e = resolve("sip.ocedge.invalid:5061").unwrap_err();
        assert!(e.contains("\"sip.ocedge.invalid\""), "{e}");
    }
}
