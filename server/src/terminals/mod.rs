//! Dedicated review terminals (the CNIL's 2023 recommendation: recordings are read only
//! from dedicated premises and terminals). The institution's terminal CA lives in the key
//! directory; `proctor-server terminal issue --name NAME` signs a client certificate for
//! one terminal; with `[tls] require_terminal = true` the staff listener accepts only TLS
//! clients holding such a certificate (mutual TLS, rustls), and every recording access is
//! audited with the terminal's certificate fingerprint.

mod revoked;

pub use revoked::{revoke, RevocationChecking, Revocations};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CA_CERT: &str = "terminal-ca.pem";
const CA_KEY: &str = "terminal-ca.key";

/// The terminal a request came through: the SHA-256 of its client certificate (DER), hex,
/// and the name it was issued under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    pub fingerprint: String,
    pub name: String,
}

/// The name a terminal certificate was issued under (its common name).
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_owned())
}

fn valid_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        anyhow::bail!("a terminal name is 1 to 64 letters, digits, '-' or '_'");
    }
    Ok(())
}

/// Appends one line to a list of the key directory, durably.
fn write_line(path: &Path, line: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{line}")?;
    f.sync_all()?;
    Ok(())
}

pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

#[derive(Debug)]
pub struct IssuedTerminal {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub fingerprint: String,
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The institution's terminal CA, created on first use.
fn ca(key_dir: &Path) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
    let (cert_path, key_path) = (key_dir.join(CA_CERT), key_dir.join(CA_KEY));
    if !cert_path.exists() {
        std::fs::create_dir_all(key_dir)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::OrganizationName, "CCI France — CLOE Connect");
        params
            .distinguished_name
            .push(DnType::CommonName, "Terminaux de relecture");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.self_signed(&key)?;
        write_private(&key_path, &key.serialize_pem())?;
        write_private(&cert_path, &cert.pem())?;
    }
    let key = KeyPair::from_pem(&std::fs::read_to_string(&key_path)?)?;
    let params = CertificateParams::from_ca_cert_pem(&std::fs::read_to_string(&cert_path)?)?;
    // Re-signing the same name with the same key gives an issuer identical to the stored CA.
    Ok((params.self_signed(&key)?, key))
}

/// Signs a client certificate for one terminal into `out_dir` (NAME.pem, NAME.key).
pub fn issue(key_dir: &Path, name: &str, out_dir: &Path) -> anyhow::Result<IssuedTerminal> {
    valid_name(name)?;
    if Revocations::new(key_dir).is_revoked(name) {
        anyhow::bail!("terminal {name} was revoked: issue the new one under another name");
    }
    let (ca_cert, ca_key) = ca(key_dir)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_after = rcgen::date_time_ymd(2030, 1, 1);
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    std::fs::create_dir_all(out_dir)?;
    let (cert_path, key_path) = (
        out_dir.join(format!("{name}.pem")),
        out_dir.join(format!("{name}.key")),
    );
    write_private(&key_path, &key.serialize_pem())?;
    write_private(&cert_path, &cert.pem())?;
    let fingerprint = fingerprint(cert.der());
    write_line(
        &key_dir.join(revoked::ISSUED),
        &format!("{name} {fingerprint}"),
    )?;
    Ok(IssuedTerminal {
        cert_path,
        key_path,
        fingerprint,
    })
}

/// The staff listener's TLS with client certificates required, checked against `ca` and
/// the revoked list.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
    ca: &Path,
    revoked: std::sync::Arc<Revocations>,
) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("reading the terminal CA {}", ca.display()))?
    {
        roots.add(c?)?;
    }
    let verifier = std::sync::Arc::new(RevocationChecking {
        inner: rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots)).build()?,
        revoked,
    });
    let chain = CertificateDer::pem_file_iter(cert_path)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key_path)?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts TLS connections and hands each request the terminal it came through.
#[derive(Clone)]
pub struct TerminalAcceptor {
    inner: axum_server::tls_rustls::RustlsAcceptor,
}

impl TerminalAcceptor {
    pub fn new(config: axum_server::tls_rustls::RustlsConfig) -> Self {
        Self {
            inner: axum_server::tls_rustls::RustlsAcceptor::new(config),
        }
    }
}

impl<I, S> axum_server::accept::Accept<I, S> for TerminalAcceptor
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<I>;
    type Service = axum::middleware::AddExtension<S, Option<Terminal>>;
    type Future =
        futures::future::BoxFuture<'static, std::io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            use tower::Layer;
            let (stream, service) = inner.accept(stream, service).await?;
            let terminal = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Terminal {
                    fingerprint: fingerprint(c),
                    name: common_name(c).unwrap_or_default(),
                });
            Ok((stream, axum::Extension(terminal).layer(service)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminals_are_signed_by_one_ca_kept_in_the_key_directory() {
        let dir = tempfile::tempdir().unwrap();
        let a = issue(&dir.path().join("keys"), "poste-1", &dir.path().join("out")).unwrap();
        let b = issue(&dir.path().join("keys"), "poste-2", &dir.path().join("out")).unwrap();
        assert_ne!(a.fingerprint, b.fingerprint);
        assert!(dir.path().join("keys").join(CA_CERT).exists());
        assert!(
            issue(&dir.path().join("keys"), "poste-1", &dir.path().join("out")).is_err(),
            "never overwrites"
        );
        assert!(issue(&dir.path().join("keys"), "../x", &dir.path().join("out")).is_err());
        // Both verify against the CA.
        let ca = dir.path().join("keys").join(CA_CERT);
        let revoked = std::sync::Arc::new(Revocations::new(&dir.path().join("keys")));
        let cfg = server_config(&a.cert_path, &a.key_path, &ca, revoked);
        assert!(cfg.is_ok(), "{:?}", cfg.err());
    }
}
