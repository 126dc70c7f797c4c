//! Cron schedules of crowd sends: the five classic fields (`minute hour day-of-month month
//! day-of-week`) read in a fixed UTC offset, and the next time one fires. Pure: the caller brings
//! the time.
//!
//! Each field takes `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, and comma lists of
//! those. Day of week runs 0-7 with both 0 and 7 for Sunday. As in Vixie cron, when both day of
//! month and day of week are restricted a day matching either fires.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeDelta, Timelike, Utc};

/// Why an expression is not a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cron expression {expression:?}: {reason}")]
pub struct CronError {
    pub expression: String,
    pub reason: String,
}

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether day of month and day of week were both restricted (then either matches).
    either_day: bool,
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

impl Cron {
    pub fn parse(expression: &str) -> Result<Cron, CronError> {
        let error = |reason: String| CronError {
            expression: crate::wire::excerpt(expression),
            reason,
        };
        let parts: Vec<&str> = expression.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(error(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                parts.len()
            )));
        }
        let mut sets = [0u64; 5];
        for (i, (part, (name, low, high))) in parts.iter().zip(FIELDS).enumerate() {
            sets[i] =
                field(part, low, high).map_err(|reason| error(format!("{name}: {reason}")))?;
        }
        // Sunday is 0 and 7.
        if sets[4] & (1 << 7) != 0 {
            sets[4] = (sets[4] | 1) & !(1 << 7);
        }
        Ok(Cron {
            minutes: sets[0],
            hours: sets[1],
            days: sets[2],
            months: sets[3],
            weekdays: sets[4],
            either_day: parts[2] != "*" && parts[4] != "*",
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let day = self.days & (1 << date.day()) != 0;
        let weekday = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.either_day {
            day || weekday
        } else {
            day && weekday
        }
    }

    /// The first time strictly after `after` (to the minute) that the schedule fires, read in
    /// `zone`; `None` when it never does (such as `0 0 31 2 *`) within eight years.
    pub fn next_after(&self, after: DateTime<Utc>, zone: FixedOffset) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&zone).naive_local();
        let mut t = local.with_second(0)?.with_nanosecond(0)? + TimeDelta::minutes(1);
        let limit = local + TimeDelta::days(366 * 8);
        while t <= limit {
            if self.months & (1 << t.month()) == 0 {
                // The first minute of the next month.
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = next_day(t)?;
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t.with_minute(0)? + TimeDelta::hours(1);
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t += TimeDelta::minutes(1);
                continue;
            }
            return Some(t.and_local_timezone(zone).single()?.with_timezone(&Utc));
        }
        None
    }
}

fn next_day(t: NaiveDateTime) -> Option<NaiveDateTime> {
    t.date().succ_opt()?.and_hms_opt(0, 0, 0)
}

/// One field as a bit set of the values it allows.
fn field(text: &str, low: u32, high: u32) -> Result<u64, String> {
    let mut set = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step {step:?} is not a positive number"))?;
                (range, step)
            }
            None => (item, 1),
        };
        let (from, to) = if range == "*" {
            (low, high)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a, low, high)?, number(b, low, high)?)
        } else {
            let n = number(range, low, high)?;
            // `5/15` means from 5 to the end, every 15.
            (n, if step > 1 { high } else { n })
        };
        if from > to {
            return Err(format!("range {range:?} runs backwards"));
        }
        let mut v = from;
        while v <= to {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

fn number(text: &str, low: u32, high: u32) -> Result<u32, String> {
    let n: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if n < low || n > high {
        return Err(format!("{n} is outside {low}-{high}"));
    }
    Ok(n)
}

/// A UTC offset such as `+08:00`, `-05:30` or `Z`.
pub fn parse_zone(text: &str) -> Option<FixedOffset> {
    if text == "Z" || text == "UTC" {
        return FixedOffset::east_opt(0);
    }
    text.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn next(expr: &str, after: &str, zone: &str) -> String {
        Cron::parse(expr)
            .unwrap()
            .next_after(utc(after), parse_zone(zone).unwrap())
            .map_or("never".to_owned(), |t| t.to_rfc3339())
    }

    #[test]
    fn every_field_shape() {
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T00:07:30Z", "Z"),
            "2026-01-01T00:15:00+00:00"
        );
        assert_eq!(
            next("0 9 * * 1-5", "2026-01-02T09:00:00Z", "Z"), // a Friday, just fired
            "2026-01-05T09:00:00+00:00"
        );
        assert_eq!(
            next("30 8,20 * * *", "2026-01-01T08:30:00Z", "Z"),
            "2026-01-01T20:30:00+00:00"
        );
        assert_eq!(
            next("0 0 1 */3 *", "2026-02-10T00:00:00Z", "Z"),
            "2026-04-01T00:00:00+00:00"
        );
        // Sunday as 7.
        assert_eq!(
            next("0 12 * * 7", "2026-01-01T00:00:00Z", "Z"),
            "2026-01-04T12:00:00+00:00"
        );
        // Day of month or day of week, when both are given: the 13th or a Friday.
        assert_eq!(
            next("0 0 13 * 5", "2026-01-03T00:00:00Z", "Z"),
            "2026-01-09T00:00:00+00:00"
        );
        assert_eq!(next("0 0 31 2 *", "2026-01-01T00:00:00Z", "Z"), "never");
    }

    #[test]
    fn the_zone_decides_the_day_and_hour() {
        // 09:00 in Beijing is 01:00 UTC.
        assert_eq!(
            next("0 9 * * *", "2026-01-01T02:00:00Z", "+08:00"),
            "2026-01-02T01:00:00+00:00"
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (expr, reason) in [
            ("* * * *", "expected 5 fields"),
            ("60 * * * *", "minute: 60 is outside 0-59"),
            ("* 5-2 * * *", "runs backwards"),
            ("*/0 * * * *", "not a positive number"),
            ("* * * jan *", "\"jan\" is not a number"),
        ] {
            let error = Cron::parse(expr).unwrap_err().to_string();
            assert!(error.contains(reason), "{expr}: {error}");
        }
    }
}
