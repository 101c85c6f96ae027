//! TLS: our certificate, the CA roots peers must chain to, and the rustls configurations
//! built from them, one per role.
//!
//! - Microsoft-side listeners require a client certificate that chains to the roots *and*
//!   is valid (SAN DNS name, wildcards as the certificate allows) for one of
//!   `microsoft.peer_names`; anything else fails the handshake.
//! - Carrier-side listeners request a client certificate but do not require one.
//! - Outgoing connections present our certificate and verify the server's chain against the
//!   roots and its name against the name the caller gives.
//!
//! All three use the ring provider and TLS 1.2 or 1.3 only (rustls has nothing older). A
//! [`TlsConfigs`] is immutable; reloading builds a new one and swaps it in, so only new
//! handshakes see new certificates.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls::{ServerConfig, SignatureScheme};

use super::stats::{bump, TransportStats};
use crate::config::Side;

/// Why certificates could not be loaded or turned into a TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{what}: no valid PEM {kind} found ({detail})")]
    Pem {
        /// The file, or `"certificate"`/`"key"`/`"ca"` for in-memory PEM.
        what: String,
        /// `certificate` or `private key`.
        kind: &'static str,
        /// What the PEM decoder said.
        detail: String,
    },
    /// A configured peer name is not a DNS name.
    #[error("microsoft.peer_names: {name:?} is not a valid DNS name")]
    BadPeerName {
        /// The name.
        name: String,
    },
    /// rustls refused the certificate, key or CA roots.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built (e.g. no CA roots).
    #[error("TLS client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// Development certificates could not be generated.
    #[error(transparent)]
    DevCerts(#[from] super::devcerts::DevCertError),
}

/// Everything TLS needs, loaded and decoded: our chain and key, the CA roots, and the names a
/// Microsoft peer's certificate must match.
pub struct TlsSetup {
    /// Our certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of the leaf.
    pub key: PrivateKeyDer<'static>,
    /// CA roots peers' certificates must chain to (both directions).
    pub roots: Vec<CertificateDer<'static>>,
    /// Names a Microsoft-side client certificate must match, any one of them.
    pub peer_names: Vec<String>,
}

impl fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("TlsSetup")
            .field("chain", &self.chain.len())
            .field("roots", &self.roots.len())
            .field("peer_names", &self.peer_names)
            .finish_non_exhaustive()
    }
}

impl TlsSetup {
    /// Decodes PEM text: a certificate chain, a private key (PKCS#8, PKCS#1 or SEC1) and CA
    /// roots.
    pub fn from_pem(
        cert: &[u8],
        key: &[u8],
        ca: &[u8],
        peer_names: Vec<String>,
    ) -> Result<TlsSetup, TlsError> {
        Ok(TlsSetup {
            chain: certs(cert, "certificate")?,
            key: PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| pem_err("key", "private key", e))?,
            roots: certs(ca, "ca")?,
            peer_names,
        })
    }

    /// Reads and decodes the three PEM files.
    pub fn load(
        cert: &Path,
        key: &Path,
        ca: &Path,
        peer_names: Vec<String>,
    ) -> Result<TlsSetup, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let (c, k, a) = (read(cert)?, read(key)?, read(ca)?);
        let name = |p: &Path| p.display().to_string();
        Ok(TlsSetup {
            chain: certs(&c, &name(cert))?,
            key: PrivateKeyDer::from_pem_slice(&k)
                .map_err(|e| pem_err(&name(key), "private key", e))?,
            roots: certs(&a, &name(ca))?,
            peer_names,
        })
    }
}

fn pem_err(what: &str, kind: &'static str, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        what: what.to_owned(),
        kind,
        detail: e.to_string(),
    }
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let list = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(what, "certificate", e))?;
    if list.is_empty() {
        return Err(pem_err(
            what,
            "certificate",
            rustls::pki_types::pem::Error::NoItemsFound,
        ));
    }
    Ok(list)
}

/// The rustls configurations for one certificate set; swapped whole on reload.
pub(crate) struct TlsConfigs {
    microsoft: Arc<ServerConfig>,
    carrier: Arc<ServerConfig>,
    /// For outgoing connections.
    pub(crate) client: Arc<ClientConfig>,
    /// For outgoing connections to a Microsoft proxy known only by its address (a
    /// connection it opened is gone, and its Via names an IP): its certificate must be
    /// valid for one of `microsoft.peer_names`, the rule its client certificates meet.
    pub(crate) microsoft_by_ip: Arc<ClientConfig>,
    peer_names: PeerNames,
}

impl TlsConfigs {
    /// Builds the three configurations; `stats` counts peer-name refusals.
    pub(crate) fn build(setup: &TlsSetup, stats: Arc<TransportStats>) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in &setup.roots {
            roots.add(ca.clone())?;
        }
        let roots = Arc::new(roots);
        let peer_names = PeerNames::new(&setup.peer_names)?;

        let inner =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
        let strict = Arc::new(PeerNameVerifier {
            inner,
            names: peer_names.clone(),
            stats,
        });
        let optional = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .allow_unauthenticated()
            .build()?;
        let server = |verifier: Arc<dyn ClientCertVerifier>| {
            ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(rustls::ALL_VERSIONS)?
                .with_client_cert_verifier(verifier)
                .with_single_cert(setup.chain.clone(), setup.key.clone_key())
                .map(Arc::new)
        };
        let webpki =
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build()?;
        let by_ip = Arc::new(PeerNameServerVerifier {
            inner: webpki.clone(),
            names: peer_names.clone(),
        });
        let client = |verifier: Arc<dyn ServerCertVerifier>| {
            ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(rustls::ALL_VERSIONS)?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_auth_cert(setup.chain.clone(), setup.key.clone_key())
                .map(Arc::new)
        };
        Ok(TlsConfigs {
            microsoft: server(strict)?,
            carrier: server(optional)?,
            client: client(webpki)?,
            microsoft_by_ip: client(by_ip)?,
            peer_names,
        })
    }

    /// The server configuration for a listener of `side`.
    pub(crate) fn server(&self, side: Side) -> Arc<ServerConfig> {
        match side {
            Side::Microsoft => self.microsoft.clone(),
            Side::Carrier => self.carrier.clone(),
        }
    }

    /// The configured peer name a verified client certificate matches, if any.
    pub(crate) fn peer_name(&self, certs: Option<&[CertificateDer<'static>]>) -> Option<String> {
        let leaf = certs?.first()?;
        self.peer_names.matching(leaf).map(str::to_owned)
    }
}

/// `microsoft.peer_names`, each parsed once into a name webpki can check.
#[derive(Debug, Clone)]
struct PeerNames(Arc<[(String, ServerName<'static>)]>);

impl PeerNames {
    fn new(names: &[String]) -> Result<Self, TlsError> {
        let parsed = names
            .iter()
            .map(|n| match ServerName::try_from(n.clone()) {
                Ok(s @ ServerName::DnsName(_)) => Ok((n.clone(), s)),
                _ => Err(TlsError::BadPeerName { name: n.clone() }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PeerNames(parsed.into()))
    }

    /// The first configured name `leaf` is valid for. Undecodable certificates match nothing.
    fn matching(&self, leaf: &CertificateDer<'_>) -> Option<&str> {
        let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
        self.0
            .iter()
            .find(|(_, name)| cert.verify_is_valid_for_subject_name(name).is_ok())
            .map(|(n, _)| n.as_str())
    }
}

/// The handshake-signature checks of a verifier wrapping `self.inner`: only the
/// certificate checks differ.
macro_rules! delegate_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// The server verifier for a Microsoft proxy reached by IP address: the WebPKI checks
/// against each configured peer name in turn, the first that passes wins. A name (not an
/// address) to verify is checked as given.
#[derive(Debug)]
struct PeerNameServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    names: PeerNames,
}

impl ServerCertVerifier for PeerNameServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let by_address = matches!(server_name, ServerName::IpAddress(_));
        if !by_address || self.names.0.is_empty() {
            return self.inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp,
                now,
            );
        }
        let mut last = None;
        for (_, name) in self.names.0.iter() {
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
            {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        )))
    }

    delegate_signatures!();
}

/// The Microsoft-side client verifier: the WebPKI chain check, then the peer-name check.
#[derive(Debug)]
struct PeerNameVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    names: PeerNames,
    stats: Arc<TransportStats>,
}

impl ClientCertVerifier for PeerNameVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.names.matching(end_entity).is_none() {
            bump(&self.stats.tls_peer_rejected);
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ));
        }
        Ok(verified)
    }

    delegate_signatures!();
}
