//! The video bitrate follows the uplink, within stated bounds (120–600 kbit/s; audio stays
//! at 48 kbit/s). Nothing measures the uplink directly: the backlog says it all. When
//! chunks pile up waiting for the server, the encoder's target drops (×0.75 per step);
//! once the backlog has stayed drained for a while it climbs back (×1.15 per step). A low
//! disk holds it at the floor, so that the spool grows as slowly as it can.
//!
//! At the floor a recording needs about 175 kbit/s (video, audio, fMP4 boxes, TLS): on any
//! uplink above that the backlog drains and the spool stays bounded; below it, or offline,
//! the spool grows by what the uplink cannot carry (the disk checks in `run.rs` warn).

use std::time::Duration;

pub const MIN_KBPS: u32 = 120;
pub const MAX_KBPS: u32 = 600;
pub const START_KBPS: u32 = 500;

/// A backlog above this many seconds of media lowers the target.
const HIGH_BACKLOG: Duration = Duration::from_secs(8);
/// At most this much waiting counts as drained (the fragment being uploaded).
const LOW_BACKLOG: Duration = Duration::from_secs(4);
/// How long the backlog must stay drained before the target climbs.
const CALM_BEFORE_RISE: Duration = Duration::from_secs(10);
/// Between two changes: the encoder needs a GOP or two to show the new rate.
const SETTLE: Duration = Duration::from_secs(4);

#[derive(Debug, Clone)]
pub struct Controller {
    kbps: u32,
    since_change: Duration,
    calm: Duration,
    last_backlog: Duration,
}

/// What the controller sees at each tick.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// Seconds of media sealed and not yet acknowledged.
    pub backlog: Duration,
    /// The spool's disk is short of space.
    pub disk_low: bool,
}

impl Default for Controller {
    fn default() -> Self {
        Self {
            kbps: START_KBPS,
            since_change: SETTLE,
            calm: Duration::ZERO,
            last_backlog: Duration::ZERO,
        }
    }
}

impl Controller {
    pub fn kbps(&self) -> u32 {
        self.kbps
    }

    /// Called every `elapsed`; returns the new target when it changes.
    pub fn tick(&mut self, elapsed: Duration, o: Observation) -> Option<u32> {
        self.since_change += elapsed;
        let growing = o.backlog >= self.last_backlog;
        self.last_backlog = o.backlog;
        self.calm = if o.backlog <= LOW_BACKLOG {
            self.calm + elapsed
        } else {
            Duration::ZERO
        };
        let target = if o.disk_low {
            MIN_KBPS
        } else if o.backlog > HIGH_BACKLOG && growing && self.since_change >= SETTLE {
            (self.kbps * 3 / 4).max(MIN_KBPS)
        } else if self.calm >= CALM_BEFORE_RISE && self.since_change >= SETTLE {
            (self.kbps * 115 / 100).max(self.kbps + 20).min(MAX_KBPS)
        } else {
            self.kbps
        };
        if target == self.kbps {
            return None;
        }
        self.kbps = target;
        self.since_change = Duration::ZERO;
        if o.backlog <= LOW_BACKLOG {
            // One rise per calm spell: the next one waits for the backlog to stay low again.
            self.calm = Duration::ZERO;
        }
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_secs(2);

    fn obs(backlog_s: u64) -> Observation {
        Observation {
            backlog: Duration::from_secs(backlog_s),
            disk_low: false,
        }
    }

    #[test]
    fn a_growing_backlog_lowers_the_target_to_the_floor_and_no_further() {
        let mut c = Controller::default();
        let mut seen = vec![c.kbps()];
        for i in 0..60 {
            if let Some(k) = c.tick(TICK, obs(10 + i * 2)) {
                seen.push(k);
            }
        }
        assert_eq!(*seen.last().unwrap(), MIN_KBPS);
        assert!(seen.windows(2).all(|w| w[1] < w[0]), "{seen:?}");
        assert!(seen.len() >= 4, "several steps down: {seen:?}");
    }

    #[test]
    fn a_steady_or_shrinking_backlog_is_not_punished_twice() {
        let mut c = Controller::default();
        assert_eq!(c.tick(TICK, obs(20)), Some(375));
        // The backlog shrinks: the lower rate is working; no further drop.
        for b in [18, 16, 14, 12, 10] {
            assert_eq!(c.tick(TICK, obs(b)), None);
        }
    }

    #[test]
    fn once_drained_it_climbs_back_to_the_ceiling_step_by_step() {
        let mut c = Controller::default();
        for _ in 0..30 {
            c.tick(
                TICK,
                Observation {
                    backlog: Duration::from_secs(30),
                    disk_low: true,
                },
            );
        }
        assert_eq!(c.kbps(), MIN_KBPS);
        let mut rises = Vec::new();
        for _ in 0..200 {
            if let Some(k) = c.tick(TICK, obs(2)) {
                rises.push(k);
            }
        }
        assert_eq!(*rises.last().unwrap(), MAX_KBPS);
        assert!(rises.windows(2).all(|w| w[1] > w[0]), "{rises:?}");
        // No rise before the backlog has been calm for 10 s.
        let mut c = Controller {
            kbps: 300,
            ..Controller::default()
        };
        assert_eq!((0..4).filter_map(|_| c.tick(TICK, obs(2))).count(), 0);
        assert!(c.tick(TICK, obs(2)).is_some());
    }

    #[test]
    fn a_low_disk_holds_the_floor_whatever_the_backlog() {
        let mut c = Controller::default();
        assert_eq!(
            c.tick(
                TICK,
                Observation {
                    backlog: Duration::ZERO,
                    disk_low: true
                }
            ),
            Some(MIN_KBPS)
        );
        for _ in 0..50 {
            assert_eq!(
                c.tick(
                    TICK,
                    Observation {
                        backlog: Duration::ZERO,
                        disk_low: true
                    }
                ),
                None
            );
        }
    }
}
