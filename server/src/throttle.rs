//! Failed staff logins, counted per login and per client address within a sliding
//! window; past the limit the key is locked out for a while, and the lock-out is checked
//! before any password hashing, so a guessing flood costs the server almost nothing.
//!
//! Hand-written because rate limiters (`governor`) count every request and cannot say
//! "only failures count, success clears the login, and a lock-out lasts N minutes"; this
//! is a map with expiry, bounded in size, tested below with an injected time.

use crate::configuration::LimitSettings;
use std::collections::HashMap;
use std::sync::Mutex;

/// Keys kept at most; past this, expired entries are dropped, then the oldest.
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
struct Entry {
    /// Times (ms) of the failures still inside the window.
    failures: Vec<i64>,
    locked_until: i64,
}

pub struct LoginThrottle {
    per_login: u32,
    per_address: u32,
    window_ms: i64,
    lockout_ms: i64,
    entries: Mutex<HashMap<String, Entry>>,
}

/// Refused: locked out for this many more seconds.
#[derive(Debug, PartialEq, Eq)]
pub struct Locked(pub u64);

impl LoginThrottle {
    pub fn new(l: &LimitSettings) -> Self {
        Self {
            per_login: l.login_max_failures.max(1),
            per_address: l.login_max_failures_per_address.max(1),
            window_ms: l.login_failure_window.as_millis() as i64,
            lockout_ms: l.login_lockout.as_millis() as i64,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn keys(login: &str, addr: &str) -> [String; 2] {
        [
            format!("login:{}", login.to_lowercase()),
            format!("addr:{addr}"),
        ]
    }

    pub fn check(&self, login: &str, addr: &str, now_ms: i64) -> Result<(), Locked> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let until = Self::keys(login, addr)
            .iter()
            .filter_map(|k| map.get(k))
            .map(|e| e.locked_until)
            .max()
            .unwrap_or(0);
        if until > now_ms {
            return Err(Locked(((until - now_ms) as u64).div_ceil(1000)));
        }
        Ok(())
    }

    /// Counts a failure; returns true when it started a lock-out.
    pub fn failed(&self, login: &str, addr: &str, now_ms: i64) -> bool {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, e| {
                e.locked_until > now_ms
                    || e.failures
                        .last()
                        .is_some_and(|t| now_ms - t < self.window_ms)
            });
            while map.len() >= MAX_KEYS {
                let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.failures.last().copied().unwrap_or(0))
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        let mut locked = false;
        for (key, limit) in Self::keys(login, addr)
            .into_iter()
            .zip([self.per_login, self.per_address])
        {
            let e = map.entry(key).or_default();
            e.failures.retain(|t| now_ms - t < self.window_ms);
            e.failures.push(now_ms);
            if e.failures.len() >= limit as usize && e.locked_until <= now_ms {
                e.locked_until = now_ms + self.lockout_ms;
                e.failures.clear();
                locked = true;
            }
        }
        locked
    }

    /// A successful login clears its login's failures (not the address's).
    pub fn succeeded(&self, login: &str) {
        let [login_key, _] = Self::keys(login, "");
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&login_key);
    }
}

/// The login as the audit trail may keep it: at most 64 characters, no control characters.
pub fn sanitise_login(login: &str) -> String {
    login
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        let mut l = crate::configuration::load(None).unwrap().limits;
        l.login_max_failures = 3;
        l.login_max_failures_per_address = 5;
        l.login_failure_window = std::time::Duration::from_secs(60);
        l.login_lockout = std::time::Duration::from_secs(300);
        LoginThrottle::new(&l)
    }

    #[test]
    fn a_login_locks_after_its_failures_and_unlocks_after_the_lockout() {
        let t = throttle();
        assert!(!t.failed("alice", "10.0.0.1", 0));
        assert!(!t.failed("Alice", "10.0.0.2", 1_000));
        assert!(
            t.failed("alice", "10.0.0.3", 2_000),
            "third failure within the window locks"
        );
        assert_eq!(t.check("ALICE", "10.0.0.9", 3_000), Err(Locked(299)));
        assert_eq!(t.check("bob", "10.0.0.9", 3_000), Ok(()));
        assert_eq!(t.check("alice", "10.0.0.9", 302_000), Ok(()));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t = throttle();
        t.failed("alice", "a", 0);
        t.failed("alice", "b", 1_000);
        assert!(!t.failed("alice", "c", 70_000));
        t.succeeded("alice");
        assert!(!t.failed("alice", "d", 71_000));
    }

    #[test]
    fn one_address_trying_many_logins_locks_out() {
        let t = throttle();
        for (i, login) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(!t.failed(login, "192.0.2.1", i as i64));
        }
        assert!(t.failed("e", "192.0.2.1", 5));
        assert!(t.check("zed", "192.0.2.1", 10).is_err());
        assert!(t.check("zed", "192.0.2.2", 10).is_ok());
    }

    #[test]
    fn logins_are_sanitised_for_the_audit() {
        assert_eq!(sanitise_login("a\nb\u{7}c"), "a?b?c");
        assert_eq!(sanitise_login(&"x".repeat(10_000)).len(), 64);
    }
}
