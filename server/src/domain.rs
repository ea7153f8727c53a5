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
        Self(format!(
            "{prefix}_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        ))
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

/// Why a password was refused: the pages say it in the reader's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    #[error("password must have at least 8 characters mixing 3 of: lower case, upper case, digits, symbols")]
    TooWeak,
    #[error("password is one of the most common ones (with digits or symbols around it)")]
    Common,
    #[error("password must not contain the login")]
    ContainsLogin,
    #[error("password is longer than 1024 bytes")]
    TooLong,
}

impl PasswordRejected {
    pub fn code(self) -> &'static str {
        match self {
            Self::TooWeak => "too_weak",
            Self::Common => "common",
            Self::ContainsLogin => "contains_login",
            Self::TooLong => "too_long",
        }
    }
}

/// The list shipped with the server (`server/data/common-passwords.txt`), as cores.
fn common_passwords() -> &'static std::collections::HashSet<&'static str> {
    static LIST: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("../data/common-passwords.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

fn unleet(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '@' | '4' => 'a',
            '3' => 'e',
            '1' | '!' => 'i',
            '0' => 'o',
            '$' | '5' => 's',
            '7' => 't',
            c => c,
        })
        .collect()
}

/// The forms of a password to look up in the list: its letters without what surrounds
/// them, and the same with substitutions undone.
fn cores(password: &str) -> [String; 3] {
    let lower = password.to_lowercase();
    let core = lower.trim_matches(|c: char| !c.is_alphabetic()).to_owned();
    let unleeted = unleet(&core);
    let whole = unleet(&lower)
        .trim_matches(|c: char| !c.is_alphabetic())
        .to_owned();
    [core, unleeted, whole]
}

impl Password {
    /// The CNIL rule (≥ 8 characters, 3 of 4 classes), not a common password, not
    /// containing the login.
    pub fn parse(s: &str, login: &str) -> Result<Self, PasswordRejected> {
        if s.len() > 1024 {
            return Err(PasswordRejected::TooLong);
        }
        let classes = [
            s.chars().any(|c| c.is_lowercase()),
            s.chars().any(|c| c.is_uppercase()),
            s.chars().any(|c| c.is_ascii_digit()),
            s.chars().any(|c| !c.is_alphanumeric()),
        ];
        if s.chars().count() < 8 || classes.iter().filter(|&&x| x).count() < 3 {
            return Err(PasswordRejected::TooWeak);
        }
        let login = login.trim().to_lowercase();
        if login.chars().count() >= 3 && s.to_lowercase().contains(&login) {
            return Err(PasswordRejected::ContainsLogin);
        }
        if cores(s)
            .iter()
            .any(|c| c.is_empty() || common_passwords().contains(c.as_str()))
        {
            return Err(PasswordRejected::Common);
        }
        // A listed word that makes up half the password or more ("azertyuiop-1A"); a long
        // passphrase may contain one ("Vélo-Rouge-du-Lundi-7").
        let unleeted = unleet(&s.to_lowercase());
        let half = s.chars().count().div_ceil(2);
        if unleeted
            .split(|c: char| !c.is_alphabetic())
            .any(|run| run.chars().count() >= half && common_passwords().contains(run))
        {
            return Err(PasswordRejected::Common);
        }
        Ok(Self(s.to_owned()))
    }

    /// A random password that passes the rule: for resets, shown once to the admin.
    pub fn generate() -> (Self, String) {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut rng = rand::rngs::OsRng;
        loop {
            let body: String = (0..14)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect();
            let candidate = format!("{}-{}", &body[..7], &body[7..]);
            if let Ok(p) = Self::parse(&candidate, "") {
                return (p, candidate);
            }
        }
    }

    pub fn hash(&self) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        argon2::Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)
            .expect("argon2 with default params")
            .to_string()
    }
}

pub fn verify_password(candidate: &str, stored_hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(stored_hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(candidate.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cnil_password_rule() {
        assert_eq!(
            Password::parse("short1A", "x").err(),
            Some(PasswordRejected::TooWeak)
        );
        assert!(Password::parse("alllowercase", "x").is_err());
        assert!(Password::parse("lowerUPPER", "x").is_err());
        assert!(Password::parse("lowerUPPER1", "x").is_ok());
        assert!(Password::parse("lower-case-1", "x").is_ok());
        let h = Password::parse("Correct-Horse-1", "x").unwrap().hash();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("Correct-Horse-1", &h));
        assert!(!verify_password("Correct-Horse-2", &h));
    }

    #[test]
    fn references_are_parsed() {
        assert!(Reference::parse("  ").is_err());
        assert!(Reference::parse("a\nb").is_err());
        assert_eq!(
            Reference::parse(" CLOE-2026-11 ").unwrap().as_str(),
            "CLOE-2026-11"
        );
    }

    #[test]
    fn common_passwords_are_refused_whatever_surrounds_them() {
        for p in [
            "Password2026!",
            "P@ssw0rd1",
            "Azerty123!",
            "azertyuiop-1A",
            "!!Motdepasse99",
            "Soleil2025*",
            "Jetaime<3AA",
            "Bonjour1!",
        ] {
            assert_eq!(
                Password::parse(p, "x").err(),
                Some(PasswordRejected::Common),
                "{p}"
            );
        }
        assert_eq!(
            Password::parse("Relectrice-2026", "relectrice").err(),
            Some(PasswordRejected::ContainsLogin)
        );
        assert_eq!(
            Password::parse("12345678Aa!", "x").err(),
            None,
            "digits are not a listed core"
        );
        assert!(Password::parse("Vélo-Rouge-du-Lundi-7", "x").is_ok());
        let (generated, shown) = Password::generate();
        assert_eq!(generated.0, shown);
        assert!(Password::parse(&shown, "x").is_ok());
    }
}

/// What a staff account must do before anything else (only the account pages answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// First login, after a reset, or the password is older than the maximum age.
    PasswordChange,
    /// TOTP is required for every account and this one has none yet.
    TotpEnrolment,
}

impl Pending {
    /// The page that settles it.
    pub fn page(self) -> &'static str {
        match self {
            Pending::PasswordChange => "/account/password",
            Pending::TotpEnrolment => "/account/totp",
        }
    }
}
