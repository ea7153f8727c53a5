//! Key epochs: how long one KEK wraps new data keys, and when it is spent.

use time::OffsetDateTime;

/// How long one KEK wraps new data keys (`[retention] kek_epoch`). A backup taken before a
/// destruction stays decryptable until its epoch's KEK goes: at the start of the second
/// epoch after it (the one between is a margin for instances whose clocks lag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum EpochLength {
    #[serde(rename = "1 day")]
    Day,
    #[serde(rename = "1 month")]
    Month,
}

impl EpochLength {
    /// The epoch's id: `2027-01-20` for a day, `2027-01` for a month (ids of both kinds sort
    /// in time order together, so a change of length destroys nothing early).
    pub fn epoch_of(self, t: OffsetDateTime) -> String {
        match self {
            Self::Day => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
            Self::Month => format!("{:04}-{:02}", t.year(), u8::from(t.month())),
        }
    }

    fn start_of(self, t: OffsetDateTime) -> OffsetDateTime {
        let day = t.replace_time(time::Time::MIDNIGHT);
        match self {
            Self::Day => day,
            Self::Month => day.replace_day(1).expect("day 1 exists"),
        }
    }

    /// The oldest epoch still kept at `now`: the previous one. Every epoch before it is
    /// spent (its KEK goes once no live key needs it).
    pub fn oldest_kept(self, now: OffsetDateTime) -> String {
        self.epoch_of(self.start_of(now) - time::Duration::SECOND)
    }

    /// When the KEK of the epoch `now` falls in becomes spent: the start of the second
    /// epoch after it.
    pub fn spent_from(self, now: OffsetDateTime) -> OffsetDateTime {
        let next = |t: OffsetDateTime| match self {
            Self::Day => self.start_of(t) + time::Duration::DAY,
            Self::Month => self.start_of(self.start_of(t) + time::Duration::days(31)),
        };
        next(next(now))
    }

    /// The start of the epoch an id names, if it is one.
    pub fn start_of_id(id: &str) -> Option<OffsetDateTime> {
        let mut parts = id.split('-').map(str::parse::<u16>);
        let (y, m) = (parts.next()?.ok()?, parts.next()?.ok()?);
        let d = match parts.next() {
            Some(d) => d.ok()?,
            None => 1,
        };
        if parts.next().is_some() {
            return None;
        }
        let date = time::Date::from_calendar_date(
            i32::from(y),
            time::Month::try_from(u8::try_from(m).ok()?).ok()?,
            u8::try_from(d).ok()?,
        )
        .ok()?;
        Some(date.midnight().assume_utc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_days_or_months_and_spend_two_epochs_later() {
        use time::macros::datetime;
        let t = datetime!(2027-01-31 22:00 UTC);
        assert_eq!(EpochLength::Day.epoch_of(t), "2027-01-31");
        assert_eq!(EpochLength::Month.epoch_of(t), "2027-01");
        assert_eq!(EpochLength::Day.oldest_kept(t), "2027-01-30");
        assert_eq!(EpochLength::Month.oldest_kept(t), "2026-12");
        assert_eq!(
            EpochLength::Day.spent_from(t),
            datetime!(2027-02-02 00:00 UTC)
        );
        assert_eq!(
            EpochLength::Month.spent_from(t),
            datetime!(2027-03-01 00:00 UTC)
        );
        assert_eq!(
            EpochLength::start_of_id("2027-01-31"),
            Some(datetime!(2027-01-31 00:00 UTC))
        );
        assert_eq!(
            EpochLength::start_of_id("2027-01"),
            Some(datetime!(2027-01-01 00:00 UTC))
        );
        for not_an_epoch in [
            "receipt-signing",
            "staff-secrets",
            "2027-13",
            "2027-01-32",
            "2027",
        ] {
            assert_eq!(
                EpochLength::start_of_id(not_an_epoch),
                None,
                "{not_an_epoch}"
            );
        }
        // After switching from months to days, the month epochs are spent at once (their
        // survivors move to today's first), and yesterday's day is kept.
        let now = datetime!(2027-02-10 12:00 UTC);
        let kept = EpochLength::Day.oldest_kept(now);
        assert!(String::from("2027-01") < kept && String::from("2027-02") < kept);
        assert!(String::from("2027-02-09") >= kept);
    }
}
