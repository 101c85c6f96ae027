//! `TransportSetup::from_config`: listeners and peers taken from the config, development
//! certificates generated once when `tls.generate_dev` is set and the files are missing, and
//! never overwritten when only some are missing. The generated set then carries a mutual TLS
//! exchange between two gateways.

// The temporary directories of the tests (`src/testdir.rs`).
#[path = "../src/testdir.rs"]
mod testdir;
mod transport_util;

use std::path::Path;

use bytes::Bytes;
use ocedge::config::{Config, Side, Transport};
use ocedge::transport::{Target, TransportError, TransportSetup};
use testdir::temp_dir;
use transport_util::{sip, Running};

fn config(dir: &Path) -> Config {
    let text = format!(
        r#"
[node]
fqdn = "sbc.carrier.example"

[[listen]]
side = "microsoft"
transport = "tls"
addr = "127.0.0.1:0"

[[listen]]
side = "carrier"
transport = "udp"
addr = "127.0.0.1:0"

[tls]
cert = "{dir}/ocedge.crt"
key = "{dir}/ocedge.key"
ca = "{dir}/ca.crt"
generate_dev = true

[microsoft]
peer_names = ["sbc.carrier.example"]
[[microsoft.targets]]
name = "sip.pstnhub.microsoft.com"
addr = "127.0.0.1:5070"
transport = "tls"

[carrier]
[[carrier.sbcs]]
name = "sbc1"
addr = "127.0.0.1:5072"
transport = "udp"
"#,
        dir = dir.display()
    );
    Config::parse(&text, "test.toml").expect("valid test config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_config_generates_dev_certificates_once_and_they_authenticate() {
    let root = temp_dir("transport-setup");
    // The certificate directory does not exist yet: generation creates it.
    let dir = root.join("certs");
    let cfg = config(&dir);
    let setup = TransportSetup::from_config(&cfg).unwrap();
    let listeners: Vec<_> = setup
        .listeners
        .iter()
        .map(|l| (l.side, l.transport))
        .collect();
    assert_eq!(
        listeners,
        [
            (Side::Microsoft, Transport::Tls),
            (Side::Carrier, Transport::Udp)
        ]
    );
    assert_eq!(
        setup.peers,
        [
            ("127.0.0.1:5070".parse().unwrap(), Side::Microsoft),
            ("127.0.0.1:5072".parse().unwrap(), Side::Carrier)
        ]
    );
    let cert = std::fs::read(dir.join("ocedge.crt")).unwrap();
    // A second load uses the files as they are.
    let again = TransportSetup::from_config(&cfg).unwrap();
    assert_eq!(std::fs::read(dir.join("ocedge.crt")).unwrap(), cert);
    assert_eq!(
        again.tls.as_ref().map(|t| t.peer_names.clone()),
        Some(vec!["sbc.carrier.example".into()])
    );

    // Two gateways with the dev set: the dev leaf names the FQDN, which is the configured
    // peer name, so each accepts the other over mutual TLS.
    let mut a = Running::start(&setup).await;
    let b = Running::start(&again).await;
    let to = Target {
        transport: Transport::Tls,
        addr: a.addr(0),
    };
    b.transports
        .send(to, Some("sbc.carrier.example"), Bytes::from(sip("dev", "")))
        .unwrap();
    let got = a.next().await;
    assert_eq!(got.tls_peer_name.as_deref(), Some("sbc.carrier.example"));
    a.stop().await;
    b.stop().await;

    // With one file missing nothing is regenerated: the load fails on that file.
    std::fs::remove_file(dir.join("ca.crt")).unwrap();
    let err = TransportSetup::from_config(&cfg).unwrap_err();
    assert!(matches!(err, TransportError::Tls(_)), "{err}");
    assert!(err.to_string().contains("ca.crt"), "{err}");
    assert_eq!(std::fs::read(dir.join("ocedge.crt")).unwrap(), cert);
}
