//! Development certificates: a self-signed CA and leaf certificates it signs, for loopback
//! testing of mutual TLS. Never for production: the CA key is thrown away once the set is
//! written, and the validity is the generator's default (1975 to 4096) so that a dev set never
//! expires under a test.
//!
//! A leaf carries both the serverAuth and clientAuth extended key usages, so the gateway's
//! one certificate serves its TLS listeners and its outgoing connections, and a test peer can
//! use a leaf as its client certificate. IP literals among the names become IP SANs.
//!
//! [`generate`] writes `ca.crt`, `ocedge.crt` and `ocedge.key` (mode 0600) and refuses to
//! overwrite any existing file: a real key must never be clobbered by a dev command.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Why development certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevCertError {
    /// The certificate generator failed (e.g. a name that is not a valid DNS name).
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file to write already exists.
    #[error("{path} already exists; remove it to generate a new development set")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A development CA held in memory, able to sign leaves.
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, as PEM.
#[derive(Clone)]
pub struct Leaf {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its PKCS#8 private key (PEM).
    pub key_pem: String,
}

/// A generated development set and where it was written.
pub struct DevCerts {
    /// The CA certificate (PEM), to configure as `tls.ca` on both ends.
    pub ca_pem: String,
    /// The gateway's certificate and key.
    pub leaf: Leaf,
    /// Where the CA certificate was written.
    pub ca_path: PathBuf,
    /// Where the certificate was written.
    pub cert_path: PathBuf,
    /// Where the key was written (mode 0600).
    pub key_path: PathBuf,
}

impl DevCa {
    /// A new self-signed CA whose subject common name is `name`.
    pub fn new(name: &str) -> Result<DevCa, DevCertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(DevCa { issuer })
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Signs a new leaf valid for `names` (DNS names or IP literals; the first is also the
    /// subject common name), usable as server and client certificate.
    pub fn issue(&self, names: &[&str]) -> Result<Leaf, DevCertError> {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &*self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The names the gateway's development certificate is valid for: `fqdn` and loopback.
pub fn dev_names(fqdn: &str) -> Vec<&str> {
    let mut names = vec![fqdn];
    for n in ["localhost", "127.0.0.1", "::1"] {
        if n != fqdn {
            names.push(n);
        }
    }
    names
}

/// Generates a development CA and a certificate for `fqdn` (plus `localhost`, `127.0.0.1`
/// and `::1`) into `dir` (created if missing) as `ca.crt`, `ocedge.crt` and `ocedge.key`.
/// Fails without writing anything if one of the files exists.
pub fn generate(dir: &Path, fqdn: &str) -> Result<DevCerts, DevCertError> {
    std::fs::create_dir_all(dir).map_err(|source| DevCertError::Write {
        path: dir.to_owned(),
        source,
    })?;
    write_set(
        &dir.join("ocedge.crt"),
        &dir.join("ocedge.key"),
        &dir.join("ca.crt"),
        fqdn,
    )
}

/// Like [`generate`], with each file's path given (the `[tls]` paths of a config with
/// `generate_dev`). Parent directories are created. Fails without writing anything if one of
/// the files exists.
pub fn write_set(cert: &Path, key: &Path, ca: &Path, fqdn: &str) -> Result<DevCerts, DevCertError> {
    for path in [cert, key, ca] {
        if path.exists() {
            return Err(DevCertError::Exists {
                path: path.to_owned(),
            });
        }
    }
    let authority = DevCa::new("ocedge development CA")?;
    let leaf = authority.issue(&dev_names(fqdn))?;
    let ca_pem = authority.cert_pem();
    // The key first: if it cannot be written, no half set is left behind.
    write_new(key, &leaf.key_pem, 0o600)?;
    write_new(cert, &leaf.cert_pem, 0o644)?;
    write_new(ca, &ca_pem, 0o644)?;
    Ok(DevCerts {
        ca_pem,
        leaf,
        ca_path: ca.to_owned(),
        cert_path: cert.to_owned(),
        key_path: key.to_owned(),
    })
}

/// Creates `path` (never replacing a file) with `mode`, creating parent directories.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), DevCertError> {
    let err = |source| DevCertError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::temp_dir;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    fn leaf_valid_for(leaf_pem: &str, name: &str) -> bool {
        let der = CertificateDer::from_pem_slice(leaf_pem.as_bytes()).unwrap();
        let cert = webpki::EndEntityCert::try_from(&der).unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        cert.verify_is_valid_for_subject_name(&name).is_ok()
    }

    #[test]
    fn generate_writes_the_set_with_a_private_key_file() {
        let root = temp_dir("devcerts-gen");
        // A directory that does not exist yet: `ocedge certs dev` creates it.
        let dir = root.join("certs");
        let set = generate(&dir, "sbc.example.net").unwrap();
        for f in ["ca.crt", "ocedge.crt", "ocedge.key"] {
            assert!(dir.join(f).is_file(), "{f}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&set.key_path)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        for name in ["sbc.example.net", "localhost", "127.0.0.1", "::1"] {
            assert!(leaf_valid_for(&set.leaf.cert_pem, name), "{name}");
        }
        assert!(!leaf_valid_for(&set.leaf.cert_pem, "other.example.net"));
        // Loads as a TLS setup, and a second run refuses to overwrite.
        let setup =
            crate::transport::TlsSetup::load(&set.cert_path, &set.key_path, &set.ca_path, vec![])
                .unwrap();
        assert_eq!((setup.chain.len(), setup.roots.len()), (1, 1));
        assert!(matches!(
            generate(&dir, "sbc.example.net"),
            Err(DevCertError::Exists { .. })
        ));
    }

    #[test]
    fn issued_leaf_names_only_what_was_asked() {
        let ca = DevCa::new("test CA").unwrap();
        let leaf = ca.issue(&["sip.pstnhub.microsoft.com"]).unwrap();
        assert!(leaf_valid_for(&leaf.cert_pem, "sip.pstnhub.microsoft.com"));
        assert!(!leaf_valid_for(
            &leaf.cert_pem,
            "sip2.pstnhub.microsoft.com"
        ));
        assert!(matches!(
            ca.issue(&["bücher.example"]),
            Err(DevCertError::Generate(_))
        ));
    }
}
