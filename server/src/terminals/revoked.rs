//! Terminals revoked one by one: `terminal revoke --name NAME` adds the name to a list in
//! the key directory; the staff listener refuses a revoked terminal's certificate at each
//! TLS handshake, and every request of a connection opened before, so a revocation takes
//! effect at the terminal's next request. The list is read again whenever the file
//! changes (one `stat` per check); an unreadable list refuses every terminal.

use super::{valid_name, write_line};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub const REVOKED: &str = "terminals-revoked.txt";
/// Every terminal issued: `NAME FINGERPRINT` per line.
pub const ISSUED: &str = "terminals-issued.txt";

/// Adds `name` to the revoked list. Refuses a name never issued (a typo would otherwise
/// leave the real terminal working) unless `force` (terminals issued before the list).
/// `false` when it was revoked already.
pub fn revoke(key_dir: &Path, name: &str, force: bool) -> anyhow::Result<bool> {
    valid_name(name)?;
    let issued = names(&key_dir.join(ISSUED))?;
    if !force && !issued.contains(name) {
        anyhow::bail!(
            "no terminal named {name} was issued (one issued before revocation existed is not listed: add --force)"
        );
    }
    let path = key_dir.join(REVOKED);
    if names(&path)?.contains(name) {
        return Ok(false);
    }
    write_line(&path, name)?;
    Ok(true)
}

/// The first word of each line of a list; an absent list is empty.
fn names(path: &Path) -> std::io::Result<HashSet<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashSet::new()),
        Err(e) => Err(e),
    }
}

/// The revoked list as the listener checks it.
#[derive(Debug)]
pub struct Revocations {
    path: PathBuf,
    cache: Mutex<Option<(SystemTime, u64, HashSet<String>)>>,
}

impl Revocations {
    pub fn new(key_dir: &Path) -> Self {
        Self {
            path: key_dir.join(REVOKED),
            cache: Mutex::new(None),
        }
    }

    pub fn is_revoked(&self, name: &str) -> bool {
        let stamp = match std::fs::metadata(&self.path) {
            Ok(m) => m.modified().ok().map(|t| (t, m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(_) => return true,
        };
        let Some((modified, len)) = stamp else {
            return true;
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(&*cache, Some((t, l, _)) if *t == modified && *l == len) {
            match names(&self.path) {
                Ok(set) => *cache = Some((modified, len, set)),
                Err(_) => return true,
            }
        }
        cache.as_ref().is_some_and(|(_, _, set)| set.contains(name))
    }
}

/// The terminal CA's verifier, and then the revoked list.
#[derive(Debug)]
pub struct RevocationChecking {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub revoked: Arc<Revocations>,
}

impl ClientCertVerifier for RevocationChecking {
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
        match super::common_name(end_entity) {
            Some(name) if !self.revoked.is_revoked(&name) => Ok(verified),
            _ => Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)),
        }
    }

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_name_is_seen_at_the_next_check_and_a_typo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, out) = (dir.path().join("keys"), dir.path().join("out"));
        super::super::issue(&keys, "poste-1", &out).unwrap();
        super::super::issue(&keys, "poste-2", &out).unwrap();
        let list = Revocations::new(&keys);
        assert!(!list.is_revoked("poste-1"));
        assert!(revoke(&keys, "poste-3", false).is_err(), "never issued");
        assert!(revoke(&keys, "poste-1", false).unwrap());
        assert!(list.is_revoked("poste-1"));
        assert!(!list.is_revoked("poste-2"));
        assert!(!revoke(&keys, "poste-1", false).unwrap(), "already revoked");
        assert!(revoke(&keys, "ancien", true).unwrap());
        assert!(list.is_revoked("ancien"));
        // The name cannot be issued again: its old certificates stay refused.
        let err = super::super::issue(&keys, "poste-1", &dir.path().join("new")).unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
    }
}
