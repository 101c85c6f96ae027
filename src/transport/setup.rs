//! [`TransportSetup`]: what the transports need from the configuration, with the TLS files
//! loaded. Building it is the only step that reads certificate files, so a reload can build a
//! new one completely before anything is swapped.

use std::net::SocketAddr;

use super::devcerts;
use super::tls::TlsSetup;
use super::{Transport, TransportError};
use crate::config::{Config, Side, Tls, TransportCfg};
use crate::sip::Limits;

/// One listener to bind: `config.listen[i]` for index `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSetup {
    /// Whose traffic arrives here.
    pub side: Side,
    /// `udp`, `tcp` or `tls`.
    pub transport: Transport,
    /// Address to bind; port 0 picks a free port ([`super::Transports::local_addr`] tells).
    pub addr: SocketAddr,
}

/// Everything [`super::Transports::start`] needs.
#[derive(Debug)]
pub struct TransportSetup {
    /// The listeners, in config order (their index is [`super::Inbound::listener`]).
    pub listeners: Vec<ListenerSetup>,
    /// Size limits on received messages.
    pub limits: Limits,
    /// Bounds and timeouts.
    pub transport: TransportCfg,
    /// Certificates; required when a listener or a destination uses TLS.
    pub tls: Option<TlsSetup>,
    /// Known peers (Microsoft targets, SBCs) and their side: a UDP message to one is sent
    /// from a socket of that side's listener.
    pub peers: Vec<(SocketAddr, Side)>,
}

impl TransportSetup {
    /// A setup for `listeners` with default limits and bounds, no TLS and no known peers.
    pub fn new(listeners: Vec<ListenerSetup>) -> TransportSetup {
        TransportSetup {
            listeners,
            limits: Limits::DEFAULT,
            transport: TransportCfg::default(),
            tls: None,
            peers: Vec::new(),
        }
    }

    /// Builds the setup from a checked configuration, reading the TLS files. With
    /// `tls.generate_dev` and none of the three files present, a development set for
    /// `node.fqdn` is generated into them first; with only some present, loading fails on
    /// the missing one rather than overwriting the others.
    pub fn from_config(cfg: &Config) -> Result<TransportSetup, TransportError> {
        let listeners = cfg
            .listen
            .iter()
            .map(|l| ListenerSetup {
                side: l.side,
                transport: l.transport,
                addr: l.addr,
            })
            .collect();
        let peer_names = cfg
            .microsoft
            .as_ref()
            .map(|m| m.peer_names.clone())
            .unwrap_or_default();
        let tls = match &cfg.tls {
            Some(t) => Some(load_tls(t, &cfg.node.fqdn, peer_names)?),
            None => None,
        };
        let mut peers = Vec::new();
        if let Some(m) = &cfg.microsoft {
            peers.extend(m.targets.iter().map(|t| (t.addr, Side::Microsoft)));
        }
        if let Some(c) = &cfg.carrier {
            peers.extend(c.sbcs.iter().map(|s| (s.addr, Side::Carrier)));
        }
        Ok(TransportSetup {
            listeners,
            limits: cfg.limits,
            transport: cfg.transport.clone(),
            tls,
            peers,
        })
    }

    /// Checks what [`super::Transports::start`] would refuse before binding anything: a TLS
    /// listener without certificates, a Microsoft-side TLS listener without peer names.
    pub(crate) fn check(&self) -> Result<(), TransportError> {
        let first_tls = self
            .listeners
            .iter()
            .position(|l| l.transport == Transport::Tls);
        match (&self.tls, first_tls) {
            (None, Some(index)) => Err(TransportError::NoTls { index }),
            (Some(tls), _) => check_peer_names(&self.listeners, tls),
            (None, None) => Ok(()),
        }
    }
}

/// A Microsoft-side TLS listener needs at least one peer name, or it refuses everyone.
pub(crate) fn check_peer_names(
    listeners: &[ListenerSetup],
    tls: &TlsSetup,
) -> Result<(), TransportError> {
    let strict = listeners
        .iter()
        .position(|l| l.transport == Transport::Tls && l.side == Side::Microsoft);
    match strict {
        Some(index) if tls.peer_names.is_empty() => Err(TransportError::NoPeerNames { index }),
        _ => Ok(()),
    }
}

fn load_tls(t: &Tls, fqdn: &str, peer_names: Vec<String>) -> Result<TlsSetup, TransportError> {
    if t.generate_dev && ![&t.cert, &t.key, &t.ca].iter().any(|p| p.exists()) {
        let set = devcerts::write_set(&t.cert, &t.key, &t.ca, fqdn)
            .map_err(|e| TransportError::Tls(e.into()))?;
        tracing::warn!(
            cert = %set.cert_path.display(),
            ca = %set.ca_path.display(),
            fqdn,
            "generated a development TLS certificate; never use it in production"
        );
    }
    Ok(TlsSetup::load(&t.cert, &t.key, &t.ca, peer_names)?)
}
