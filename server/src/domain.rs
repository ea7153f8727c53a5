//! Domain types that can only be built by parsing.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A bearer secret (launch token or staff session). Only its SHA-256 is stored: the tokens
/// are 256-bit random, so a slow hash adds nothing.
pub struct Secret(String);

impl Secret {
    pub fn generate(prefix: &str) -> Self {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Self(format!("{prefix}_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)))
    }
    pub fn hash(&self) -> [u8; 32] {
        hash_token(&self.0)
    }
    pub fn reveal(self) -> String {
        self.0
    }
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A free-text reference from the exam platform (sitting or candidate code).
#[derive(Debug, Clone)]
pub struct Reference(String);

impl Reference {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() || t.len() > 128 {
            return Err("reference must be 1 to 128 characters".into());
        }
        if t.chars().any(|c| c.is_control()) {
            return Err("reference must not contain control characters".into());
        }
        Ok(Self(t.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub use proctor_db::Role;

/// A password that passes the CNIL rule: at least 8 characters from 3 of the 4 classes.
pub struct Password(String);

impl Password {
    pub fn parse(s: &str) -> Result<Self, String> {
        let classes = [
            s.chars().any(|c| c.is_lowercase()),
            s.chars().any(|c| c.is_uppercase()),
            s.chars().any(|c| c.is_ascii_digit()),
            s.chars().any(|c| !c.is_alphanumeric()),
        ];
        if s.chars().count() < 8 || classes.iter().filter(|&&x| x).count() < 3 {
            return Err("password must have at least 8 characters mixing 3 of: lower case, upper case, digits, symbols".into());
        }
        Ok(Self(s.to_owned()))
    }
    pub fn hash(&self) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        argon2::Argon2::default().hash_password(self.0.as_bytes(), &salt).expect("argon2 with default params").to_string()
    }
}

pub fn verify_password(candidate: &str, stored_hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(stored_hash).is_ok_and(|h| argon2::Argon2::default().verify_password(candidate.as_bytes(), &h).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cnil_password_rule() {
        assert!(Password::parse("short1A").is_err());
        assert!(Password::parse("alllowercase").is_err());
        assert!(Password::parse("lowerUPPER").is_err());
        assert!(Password::parse("lowerUPPER1").is_ok());
        assert!(Password::parse("lower-case-1").is_ok());
        let h = Password::parse("Correct-Horse-1").unwrap().hash();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("Correct-Horse-1", &h));
        assert!(!verify_password("Correct-Horse-2", &h));
    }

    #[test]
    fn references_are_parsed() {
        assert!(Reference::parse("  ").is_err());
        assert!(Reference::parse("a\nb").is_err());
        assert_eq!(Reference::parse(" CLOE-2026-11 ").unwrap().as_str(), "CLOE-2026-11");
    }
}
