//! The retention rules, as one pure function of what is known about an attempt and the
//! time: no database, no clock of its own. Everything that deletes asks here.
//!
//! - The jury validated the sitting's minutes (PV) without reservation: destroyed at once.
//! - Validated with reservations: the attempts it names as contested are kept 2 calendar
//!   months from the decision; the others are destroyed at once.
//! - Refused: every attempt of the sitting is kept 2 calendar months from the decision.
//! - No decision: destroyed at the attempt's end (or its last activity, if it never
//!   ended) plus the ceiling: 2 months by default, configurable down to a day, never above
//!   [`LEGAL_MAXIMUM_MONTHS`], never disabled.
//! - Erasure requested (the candidate's right, or consent withdrawn): at once, whatever
//!   the PV says.
//! - A legal hold stops everything while it stands; lifting it restarts the 2-month clock
//!   (the due time is never earlier than the lift + 2 months).
//!
//! Months are calendar months in UTC: the same day and time n months later, or the last
//! day of that month when it is shorter (31 January + 1 month = 28 or 29 February).

use time::{Date, Month, OffsetDateTime};

/// What the law allows at most for a recording no decision covers: we state 6 months,
/// three times the promise made to candidates, as the configuration's upper bound.
pub const LEGAL_MAXIMUM_MONTHS: u32 = 6;
/// How long a contested or refused sitting's recordings are kept after the decision.
pub const KEPT_AFTER_DISPUTE_MONTHS: u32 = 2;

/// The jury's decision on the sitting's minutes, as it concerns one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvDecision {
    ValidatedWithoutReservation,
    /// Validated with reservations; `contested` says whether this attempt is named.
    ValidatedWithReservations {
        contested: bool,
    },
    Refused,
}

/// The retention ceiling: between one day and the legal maximum, never off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    Months(u32),
    Days(u32),
}

impl Ceiling {
    pub const DEFAULT: Ceiling = Ceiling::Months(2);

    pub fn parse_months(months: u32) -> Result<Self, String> {
        if months == 0 || months > LEGAL_MAXIMUM_MONTHS {
            return Err(format!(
                "the retention ceiling is 1 to {LEGAL_MAXIMUM_MONTHS} months"
            ));
        }
        Ok(Ceiling::Months(months))
    }

    pub fn parse_days(days: u32) -> Result<Self, String> {
        if days == 0 || days > LEGAL_MAXIMUM_MONTHS * 28 {
            return Err(format!(
                "the retention ceiling is 1 day to {LEGAL_MAXIMUM_MONTHS} months"
            ));
        }
        Ok(Ceiling::Days(days))
    }

    /// "2 months", "1 month", "30 days", "1 day".
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut words = s.split_whitespace();
        let (n, unit) = (
            words.next().and_then(|n| n.parse::<u32>().ok()),
            words.next(),
        );
        match (n, unit, words.next()) {
            (Some(n), Some("month" | "months"), None) => Self::parse_months(n),
            (Some(n), Some("day" | "days"), None) => Self::parse_days(n),
            _ => Err(format!(
                "the retention ceiling is written \"2 months\" or \"30 days\", not {s:?}"
            )),
        }
    }

    /// The shortest time the ceiling can be (a month is at least 28 days).
    pub fn shortest(self) -> std::time::Duration {
        let days = match self {
            Ceiling::Months(m) => u64::from(m) * 28,
            Ceiling::Days(d) => u64::from(d),
        };
        std::time::Duration::from_secs(days * 86_400)
    }

    /// An end time at or before which the ceiling may have passed by `now`: every attempt
    /// the ceiling makes due ended at or before it (up to ~2 weeks more for months, whose
    /// length varies; the policy then decides exactly). The sweep's database filter.
    pub fn undecided_cutoff(self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            Ceiling::Days(_) | Ceiling::Months(_) => now - self.shortest(),
        }
    }

    fn after(self, t: OffsetDateTime) -> OffsetDateTime {
        match self {
            Ceiling::Months(m) => add_months(t, m),
            Ceiling::Days(d) => t + time::Duration::days(i64::from(d)),
        }
    }
}

/// The notice states the ceiling.
impl From<Ceiling> for protocol::notice::Ceiling {
    fn from(c: Ceiling) -> Self {
        match c {
            Ceiling::Months(n) => Self::Months(n),
            Ceiling::Days(n) => Self::Days(n),
        }
    }
}

/// What is known about one attempt, for retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The attempt's last sign of life before any end: its creation, a launch token issued
    /// again, a state change (consent, recording). An attempt that never ended counts its
    /// ceiling from here, so that a candidate enrolled long before the exam keeps theirs.
    pub last_active_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
    pub decision: Option<(PvDecision, OffsetDateTime)>,
    pub erasure_requested_at: Option<OffsetDateTime>,
    /// A hold placed and not lifted.
    pub on_hold: bool,
    /// When the last hold was lifted.
    pub hold_lifted_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Held for a proceeding: nothing may be deleted.
    Held,
    /// To be destroyed at this time (now or in the past: due).
    DestroyAt(OffsetDateTime),
}

impl Fate {
    pub fn is_due(self, now: OffsetDateTime) -> bool {
        matches!(self, Fate::DestroyAt(t) if t <= now)
    }
}

/// The rule for one attempt.
pub fn retention(f: &Facts, ceiling: Ceiling) -> Fate {
    if f.on_hold {
        return Fate::Held;
    }
    let by_rule = if let Some(at) = f.erasure_requested_at {
        at
    } else {
        match f.decision {
            Some((PvDecision::ValidatedWithoutReservation, at)) => at,
            Some((PvDecision::ValidatedWithReservations { contested: false }, at)) => at,
            Some((
                PvDecision::ValidatedWithReservations { contested: true } | PvDecision::Refused,
                at,
            )) => add_months(at, KEPT_AFTER_DISPUTE_MONTHS),
            None => ceiling.after(f.ended_at.unwrap_or(f.last_active_at)),
        }
    };
    // A hold lifted restarts the clock, unless nothing but the hold kept the recording: an
    // erasure asked while held, or a PV validated without contesting it, happen at the lift.
    let nothing_else_keeps_it = f.erasure_requested_at.is_some()
        || matches!(
            f.decision,
            Some((
                PvDecision::ValidatedWithoutReservation
                    | PvDecision::ValidatedWithReservations { contested: false },
                _
            ))
        );
    let after_hold = f.hold_lifted_at.map(|lifted| {
        if nothing_else_keeps_it {
            lifted
        } else {
            add_months(lifted, KEPT_AFTER_DISPUTE_MONTHS)
        }
    });
    Fate::DestroyAt(after_hold.map_or(by_rule, |h| by_rule.max(h)))
}

/// `t` plus `months` calendar months, UTC, clamped to the end of a shorter month.
pub fn add_months(t: OffsetDateTime, months: u32) -> OffsetDateTime {
    shift_months(t, months as i32)
}

/// `t` that many calendar months before (the day clamped to the month's length).
pub fn sub_months(t: OffsetDateTime, months: u32) -> OffsetDateTime {
    shift_months(t, -(months as i32))
}

fn shift_months(t: OffsetDateTime, months: i32) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    let total = t.year() * 12 + (u8::from(t.month()) as i32 - 1) + months;
    let (year, month) = (
        total.div_euclid(12),
        Month::try_from((total.rem_euclid(12) + 1) as u8).expect("1..=12"),
    );
    let day = t.day().min(month.length(year));
    let date = Date::from_calendar_date(year, month, day).expect("a valid day of that month");
    t.replace_date(date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const SECOND: time::Duration = time::Duration::SECOND;

    fn facts(end: OffsetDateTime) -> Facts {
        Facts {
            last_active_at: end - time::Duration::hours(2),
            ended_at: Some(end),
            decision: None,
            erasure_requested_at: None,
            on_hold: false,
            hold_lifted_at: None,
        }
    }

    #[test]
    fn calendar_months_clamp_to_the_end_of_shorter_months() {
        assert_eq!(
            add_months(datetime!(2027-01-31 10:00 UTC), 1),
            datetime!(2027-02-28 10:00 UTC)
        );
        assert_eq!(
            add_months(datetime!(2028-01-31 10:00 UTC), 1),
            datetime!(2028-02-29 10:00 UTC)
        );
        assert_eq!(
            add_months(datetime!(2026-12-31 23:59:59 UTC), 2),
            datetime!(2027-02-28 23:59:59 UTC)
        );
        assert_eq!(
            add_months(datetime!(2026-11-29 20:00 UTC), 2),
            datetime!(2027-01-29 20:00 UTC)
        );
        assert_eq!(
            add_months(datetime!(2027-03-31 00:00 UTC), 6),
            datetime!(2027-09-30 00:00 UTC)
        );
        // Another offset is read in UTC.
        assert_eq!(
            add_months(datetime!(2027-01-01 00:30 +01:00), 1),
            datetime!(2027-01-31 23:30 UTC)
        );
    }

    /// The whole table: every PV outcome, with and without erasure and holds, one second
    /// before and one second after each deadline.
    #[test]
    fn every_outcome_at_its_boundaries() {
        let end = datetime!(2027-01-31 17:00 UTC);
        let decided = datetime!(2027-02-15 09:30 UTC);
        let two_months_after_decision = datetime!(2027-04-15 09:30 UTC);
        let ceiling_after_end = datetime!(2027-03-31 17:00 UTC);
        let cases: Vec<(&str, Facts, Option<OffsetDateTime>)> = vec![
            (
                "no decision: end + 2 months",
                facts(end),
                Some(ceiling_after_end),
            ),
            (
                "validated without reservation: at once",
                Facts {
                    decision: Some((PvDecision::ValidatedWithoutReservation, decided)),
                    ..facts(end)
                },
                Some(decided),
            ),
            (
                "validated with reservations, not named: at once",
                Facts {
                    decision: Some((
                        PvDecision::ValidatedWithReservations { contested: false },
                        decided,
                    )),
                    ..facts(end)
                },
                Some(decided),
            ),
            (
                "validated with reservations, contested: decision + 2 months",
                Facts {
                    decision: Some((
                        PvDecision::ValidatedWithReservations { contested: true },
                        decided,
                    )),
                    ..facts(end)
                },
                Some(two_months_after_decision),
            ),
            (
                "refused: decision + 2 months",
                Facts {
                    decision: Some((PvDecision::Refused, decided)),
                    ..facts(end)
                },
                Some(two_months_after_decision),
            ),
            (
                "erasure requested before any decision: at once",
                Facts {
                    erasure_requested_at: Some(datetime!(2027-02-01 08:00 UTC)),
                    ..facts(end)
                },
                Some(datetime!(2027-02-01 08:00 UTC)),
            ),
            (
                "erasure requested after a refusal: at once, whatever the PV",
                Facts {
                    decision: Some((PvDecision::Refused, decided)),
                    erasure_requested_at: Some(datetime!(2027-02-20 08:00 UTC)),
                    ..facts(end)
                },
                Some(datetime!(2027-02-20 08:00 UTC)),
            ),
            (
                "on hold: never while it stands",
                Facts {
                    on_hold: true,
                    decision: Some((PvDecision::ValidatedWithoutReservation, decided)),
                    ..facts(end)
                },
                None,
            ),
            (
                "on hold with an erasure request: the hold wins",
                Facts {
                    on_hold: true,
                    erasure_requested_at: Some(decided),
                    ..facts(end)
                },
                None,
            ),
            (
                "hold lifted after a validation: at the lift",
                Facts {
                    decision: Some((PvDecision::ValidatedWithoutReservation, decided)),
                    hold_lifted_at: Some(datetime!(2027-06-30 12:00 UTC)),
                    ..facts(end)
                },
                Some(datetime!(2027-06-30 12:00 UTC)),
            ),
            (
                "hold lifted after a validation that contests no one here: at the lift",
                Facts {
                    decision: Some((
                        PvDecision::ValidatedWithReservations { contested: false },
                        decided,
                    )),
                    hold_lifted_at: Some(datetime!(2027-06-30 12:00 UTC)),
                    ..facts(end)
                },
                Some(datetime!(2027-06-30 12:00 UTC)),
            ),
            (
                "hold lifted late after a refusal: lift + 2 months",
                Facts {
                    decision: Some((PvDecision::Refused, decided)),
                    hold_lifted_at: Some(datetime!(2027-06-30 12:00 UTC)),
                    ..facts(end)
                },
                Some(datetime!(2027-08-30 12:00 UTC)),
            ),
            (
                "hold lifted early: the rule's later date stands",
                Facts {
                    decision: Some((PvDecision::Refused, decided)),
                    hold_lifted_at: Some(datetime!(2027-01-31 18:00 UTC)),
                    ..facts(end)
                },
                Some(two_months_after_decision),
            ),
            (
                "hold lifted with an erasure request: at the lift",
                Facts {
                    erasure_requested_at: Some(decided),
                    hold_lifted_at: Some(datetime!(2027-05-01 00:00 UTC)),
                    ..facts(end)
                },
                Some(datetime!(2027-05-01 00:00 UTC)),
            ),
            (
                "never ended: creation + 2 months",
                Facts {
                    ended_at: None,
                    ..facts(end)
                },
                Some(datetime!(2027-03-31 15:00 UTC)),
            ),
        ];
        for (name, f, due) in cases {
            let r = retention(&f, Ceiling::DEFAULT);
            match due {
                None => {
                    assert_eq!(r, Fate::Held, "{name}");
                    assert!(!r.is_due(datetime!(2100-01-01 00:00 UTC)), "{name}");
                }
                Some(due) => {
                    assert_eq!(r, Fate::DestroyAt(due), "{name}");
                    assert!(!r.is_due(due - SECOND), "{name}: one second before");
                    assert!(r.is_due(due), "{name}: at the deadline");
                    assert!(r.is_due(due + SECOND), "{name}: one second after");
                }
            }
        }
    }

    #[test]
    fn the_ceiling_goes_down_never_off_never_past_the_legal_maximum() {
        let end = datetime!(2027-01-31 17:00 UTC);
        assert_eq!(
            retention(&facts(end), Ceiling::parse_days(7).unwrap()),
            Fate::DestroyAt(datetime!(2027-02-07 17:00 UTC))
        );
        assert_eq!(
            retention(&facts(end), Ceiling::parse_months(1).unwrap()),
            Fate::DestroyAt(datetime!(2027-02-28 17:00 UTC))
        );
        assert!(
            Ceiling::parse_months(0).is_err() && Ceiling::parse_days(0).is_err(),
            "never disabled"
        );
        assert!(Ceiling::parse_months(LEGAL_MAXIMUM_MONTHS + 1).is_err());
        assert!(Ceiling::parse_days(LEGAL_MAXIMUM_MONTHS * 28 + 1).is_err());
        assert!(Ceiling::parse_months(LEGAL_MAXIMUM_MONTHS).is_ok());
    }

    #[test]
    fn the_ceiling_reads_as_written() {
        assert_eq!(Ceiling::parse("2 months"), Ok(Ceiling::Months(2)));
        assert_eq!(Ceiling::parse("1 month"), Ok(Ceiling::Months(1)));
        assert_eq!(Ceiling::parse("30 days"), Ok(Ceiling::Days(30)));
        for bad in [
            "",
            "2",
            "two months",
            "7 months",
            "0 days",
            "2 months ago",
            "3 weeks",
        ] {
            assert!(Ceiling::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// The sweep's database filter never leaves out an attempt the ceiling makes due.
    #[test]
    fn the_undecided_cutoff_covers_every_due_attempt() {
        let mut now = datetime!(2027-01-01 00:00 UTC);
        for ceiling in [
            Ceiling::Months(1),
            Ceiling::Months(2),
            Ceiling::Months(6),
            Ceiling::Days(1),
            Ceiling::Days(45),
        ] {
            for _ in 0..800 {
                now += time::Duration::hours(11);
                let cutoff = ceiling.undecided_cutoff(now);
                // The latest end that is due now is at or before the cutoff…
                let mut end = now;
                while !retention(&facts(end), ceiling).is_due(now) {
                    end -= time::Duration::hours(1);
                }
                assert!(
                    end <= cutoff,
                    "{ceiling:?} at {now}: due end {end} after cutoff {cutoff}"
                );
                // …and at most the spread of month lengths past it (a superset, not all).
                assert!(
                    cutoff - end <= time::Duration::days(20),
                    "{ceiling:?} at {now}"
                );
            }
        }
    }
}
