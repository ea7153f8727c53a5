//! The launch token the exam platform hands the candidate's agent.
//!
//! ```text
//! clt_<secret>.<attempt id ‖ attempt public key>      (both parts base64url, no padding)
//! ```
//! The part before the dot is the *credential*: the server stores only its hash and the
//! agent sends only it. The part after it lets the agent record with the server
//! unreachable from the first second: it names the attempt and the key its stream keys
//! are sealed to. Tokens issued before store-and-forward are a bare credential.

use crate::{AttemptPublicKey, Error};
use base64::Engine;
use std::fmt;
use uuid::Uuid;

const PREFIX: &str = "clt_";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Clone, PartialEq, Eq)]
pub struct LaunchToken {
    credential: String,
    /// What the agent needs to record offline, when the token carries it.
    pub offline: Option<(Uuid, AttemptPublicKey)>,
}

impl LaunchToken {
    pub fn new(secret: &[u8; 32], attempt: Uuid, public: AttemptPublicKey) -> Self {
        Self {
            credential: format!("{PREFIX}{}", B64.encode(secret)),
            offline: Some((attempt, public)),
        }
    }

    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let (credential, offline) = match s.split_once('.') {
            Some((c, o)) => (c, Some(o)),
            None => (s, None),
        };
        let secret = credential
            .strip_prefix(PREFIX)
            .ok_or(Error::InvalidLaunchToken("it does not start with clt_"))?;
        if secret.is_empty() || secret.len() > 128 || B64.decode(secret).is_err() {
            return Err(Error::InvalidLaunchToken("malformed secret"));
        }
        let offline = match offline {
            None => None,
            Some(o) => {
                let b = B64
                    .decode(o)
                    .map_err(|_| Error::InvalidLaunchToken("malformed attempt part"))?;
                if b.len() != 48 {
                    return Err(Error::InvalidLaunchToken("the attempt part is 48 bytes"));
                }
                let attempt = Uuid::from_slice(&b[..16]).expect("16 bytes");
                Some((attempt, AttemptPublicKey::parse(&b[16..])?))
            }
        };
        Ok(Self {
            credential: credential.to_owned(),
            offline,
        })
    }

    /// What authenticates the agent (a bearer secret: never logged).
    pub fn credential(&self) -> &str {
        &self.credential
    }

    /// The whole token, as handed to the candidate.
    pub fn expose(&self) -> String {
        match &self.offline {
            Some((attempt, public)) => format!(
                "{}.{}",
                self.credential,
                B64.encode([attempt.as_bytes().as_slice(), &public.0].concat())
            ),
            None => self.credential.clone(),
        }
    }
}

impl fmt::Debug for LaunchToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchToken")
            .field("credential", &"<redacted>")
            .field("offline", &self.offline)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_the_credential_is_the_bare_legacy_form() {
        let attempt = Uuid::new_v4();
        let (_, public) = crate::AttemptKey::generate().recipient(&attempt);
        let t = LaunchToken::new(&[7; 32], attempt, public);
        let text = t.expose();
        let parsed = LaunchToken::parse(&text).unwrap();
        assert_eq!(parsed, t);
        assert_eq!(parsed.offline, Some((attempt, public)));
        assert!(text.starts_with(parsed.credential()) && !parsed.credential().contains('.'));
        let legacy = LaunchToken::parse(parsed.credential()).unwrap();
        assert_eq!(
            (legacy.credential(), legacy.offline),
            (parsed.credential(), None)
        );
        assert!(!format!("{parsed:?}").contains(parsed.credential()));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "clt_",
            "xyz_abc",
            "clt_abc.",
            "clt_abc.AAAA",
            "clt_a b",
            "clt_abc.!!",
        ] {
            assert!(LaunchToken::parse(bad).is_err(), "{bad:?}");
        }
    }
}
