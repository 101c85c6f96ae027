//! Certificates made in the test with rcgen (a CA and leaves it signs) and the rustls
//! configurations of the fake peers, ring provider only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A CA able to sign leaves.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Leaf {
    /// Certificate.
    pub cert_pem: String,
    /// PKCS#8 key.
    pub key_pem: String,
}

impl Ca {
    /// A new self-signed CA.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA cert"),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names` (DNS names or IP literals), for server and client use.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &*self.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Arc<RootCertStore> {
    let mut r = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        r.add(c.expect("CA PEM")).expect("add root");
    }
    Arc::new(r)
}

fn chain(leaf: &Leaf) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("leaf PEM");
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key PEM");
    (certs, key)
}

/// A client configuration trusting `ca_pem`, presenting `leaf` when given.
pub fn client_config(ca_pem: &str, leaf: Option<&Leaf>) -> Arc<ClientConfig> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots(ca_pem));
    let cfg = match leaf {
        Some(l) => {
            let (certs, key) = chain(l);
            b.with_client_auth_cert(certs, key).expect("client cert")
        }
        None => b.with_no_client_auth(),
    };
    Arc::new(cfg)
}

/// A server configuration presenting `leaf` and requiring a client certificate that chains
/// to `ca_pem` (the fake Microsoft proxy).
pub fn server_config(ca_pem: &str, leaf: &Leaf) -> Arc<ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem), provider())
        .build()
        .expect("client verifier");
    let (certs, key) = chain(leaf);
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .expect("server cert");
    Arc::new(cfg)
}

/// Writes the gateway's TLS files (`ocedge.crt`, `ocedge.key`, `ca.crt`) into `dir`.
pub fn write_gateway_files(dir: &Path, ca_pem: &str, leaf: &Leaf) -> [PathBuf; 3] {
    let files = [
        dir.join("ocedge.crt"),
        dir.join("ocedge.key"),
        dir.join("ca.crt"),
    ];
    std::fs::write(&files[0], &leaf.cert_pem).expect("write cert");
    std::fs::write(&files[1], &leaf.key_pem).expect("write key");
    std::fs::write(&files[2], ca_pem).expect("write ca");
    files
}
