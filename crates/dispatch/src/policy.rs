//! Dispatch policies as pure functions of the message, the policy and the time: what the night
//! shield does to a message now, and the keys and periods of dedup and frequency caps. No IO and
//! no clock here; the worker passes `now` in and asks the shared cache.

use chrono::{DateTime, Duration, FixedOffset, NaiveTime, TimeZone, Utc};
use domain::ShieldType;
use domain::message::MessageAccepted;
use sha2::{Digest, Sha256};

/// The dedup and frequency rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Same receiver, template and content within this window is a duplicate (0: off).
    pub dedup_window: std::time::Duration,
    /// At most this many messages per receiver and channel per calendar day in the zone (0: off).
    pub frequency_cap: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            dedup_window: std::time::Duration::from_secs(300),
            frequency_cap: 5,
        }
    }
}

/// The content dedup key: tenant, receiver, template and a digest of the rendered content.
pub fn dedup_key(message: &MessageAccepted) -> String {
    let content = serde_json::to_vec(&message.content).unwrap_or_default();
    let digest: String = Sha256::digest(&content)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}:{}:{}:{}",
        message.tenant,
        message.receiver.value(),
        message.template_id,
        digest
    )
}

/// The frequency key of a message on the day `now` falls in, and when that day ends (ms).
pub fn frequency_key(
    message: &MessageAccepted,
    zone: FixedOffset,
    now: DateTime<Utc>,
) -> (String, i64) {
    let day = now.with_timezone(&zone).date_naive();
    let next = day.succ_opt().unwrap_or(day).and_time(NaiveTime::MIN);
    let end = zone
        .from_local_datetime(&next)
        .single()
        .map_or(now + Duration::days(1), |t| t.with_timezone(&Utc));
    let key = format!(
        "{}:{}:{}:{}",
        message.tenant,
        message.receiver.value(),
        message.channel.as_str(),
        day
    );
    (key, end.timestamp_millis())
}

/// The receiver's night, in the tenant's zone: messages of templates with a night shield are
/// discarded or deferred to `resume`. Default 22:00-08:00 at UTC+8 (Asia/Shanghai, which has
/// no daylight saving), resuming at 09:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NightWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub resume: NaiveTime,
    pub zone: FixedOffset,
}

impl Default for NightWindow {
    fn default() -> Self {
        NightWindow {
            start: NaiveTime::from_hms_opt(22, 0, 0).unwrap_or_default(),
            end: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or_default(),
            resume: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
            zone: FixedOffset::east_opt(8 * 3600)
                .unwrap_or_else(|| FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NightAction {
    /// `NIGHT_DISCARD`: the message is not sent at all.
    Shield,
    /// `NIGHT_DEFER`: the message goes out at this time.
    Defer(DateTime<Utc>),
}

impl NightWindow {
    /// Whether `now` falls in the night; a window may wrap past midnight.
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let t = now.with_timezone(&self.zone).time();
        if self.start <= self.end {
            t >= self.start && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// The next `resume` time after `now`, in the zone.
    pub fn next_resume(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let local = now.with_timezone(&self.zone);
        let mut day = local.date_naive();
        if local.time() >= self.resume {
            day = day.succ_opt().unwrap_or(day);
        }
        let resume = day.and_time(self.resume);
        // A fixed offset maps every local time to exactly one instant.
        self.zone
            .from_local_datetime(&resume)
            .single()
            .map_or(now + Duration::hours(24), |t| t.with_timezone(&Utc))
    }

    /// What the night shield does to a message of a template with `shield` at `now`.
    pub fn action(&self, shield: ShieldType, now: DateTime<Utc>) -> Option<NightAction> {
        if !self.contains(now) {
            return None;
        }
        match shield {
            ShieldType::None => None,
            ShieldType::NightDiscard => Some(NightAction::Shield),
            ShieldType::NightDefer => Some(NightAction::Defer(self.next_resume(now))),
        }
    }
}

/// The sandbox: a tenant in it (or every tenant, for a whole staging deployment) sends only to
/// whitelisted receivers; any other message is discarded with `NOT_WHITELISTED` before it
/// reaches a supplier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    /// Every tenant is in the sandbox.
    pub all_tenants: bool,
    pub tenants: std::collections::BTreeSet<String>,
    /// Receivers that still get messages, as written (`13800138000`, `+8613800138000` and
    /// `+86 138 0013 8000` are one phone number).
    pub whitelist: Vec<String>,
}

impl Sandbox {
    /// Whether `tenant` is in the sandbox.
    pub fn applies_to(&self, tenant: &str) -> bool {
        self.all_tenants || self.tenants.contains(tenant)
    }

    /// Whether `message` may go out: its tenant is not in the sandbox, or its receiver is
    /// whitelisted (compared in the receiver's normal form).
    pub fn allows(&self, message: &MessageAccepted) -> bool {
        if !self.applies_to(message.tenant.as_str()) {
            return true;
        }
        let receiver = &message.receiver;
        self.whitelist.iter().any(|entry| {
            entry == receiver.value()
                || domain::Receiver::parse(receiver.id_type(), entry)
                    .is_ok_and(|listed| listed.value() == receiver.value())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time in Shanghai, as UTC.
    fn at(h: u32, m: u32) -> DateTime<Utc> {
        let zone = FixedOffset::east_opt(8 * 3600).expect("offset");
        zone.with_ymd_and_hms(2026, 11, 23, h, m, 0)
            .single()
            .expect("time")
            .with_timezone(&Utc)
    }

    #[track_caller]
    fn check(shield: ShieldType, now: DateTime<Utc>, expected: Option<NightAction>) {
        assert_eq!(NightWindow::default().action(shield, now), expected);
    }

    #[test]
    fn the_default_night_is_22_to_8_in_shanghai() {
        check(ShieldType::NightDiscard, at(21, 59), None);
        check(
            ShieldType::NightDiscard,
            at(22, 0),
            Some(NightAction::Shield),
        );
        check(
            ShieldType::NightDiscard,
            at(3, 0),
            Some(NightAction::Shield),
        );
        check(ShieldType::NightDiscard, at(8, 0), None);
        check(ShieldType::None, at(23, 0), None);
    }

    #[test]
    fn deferred_messages_go_out_at_nine() {
        // Late evening: nine the next morning.
        let next_day_nine = at(9, 0) + Duration::days(1);
        check(
            ShieldType::NightDefer,
            at(23, 30),
            Some(NightAction::Defer(next_day_nine)),
        );
        // Small hours: nine the same morning.
        check(
            ShieldType::NightDefer,
            at(2, 0),
            Some(NightAction::Defer(at(9, 0))),
        );
    }

    #[test]
    fn a_window_that_does_not_wrap() {
        let window = NightWindow {
            start: NaiveTime::from_hms_opt(1, 0, 0).expect("t"),
            end: NaiveTime::from_hms_opt(5, 0, 0).expect("t"),
            ..NightWindow::default()
        };
        assert!(window.contains(at(1, 0)) && window.contains(at(4, 59)));
        assert!(
            !window.contains(at(0, 59))
                && !window.contains(at(5, 0))
                && !window.contains(at(23, 0))
        );
    }
}
