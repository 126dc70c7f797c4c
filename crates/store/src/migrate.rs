//! The SQL migrations of both backends, embedded in the binary so `herald migrate` needs no files.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

/// One migration file: its version, description and SQL.
type Source = (i64, &'static str, &'static str);

const POSTGRES: &[Source] = &[
    (
        1,
        "event store",
        include_str!("../../../migrations/postgres/0001_event_store.sql"),
    ),
    (
        2,
        "tenants and keys",
        include_str!("../../../migrations/postgres/0002_tenants_and_keys.sql"),
    ),
    (
        3,
        "templates and settings",
        include_str!("../../../migrations/postgres/0003_templates_and_settings.sql"),
    ),
    (
        4,
        "dispatch queue",
        include_str!("../../../migrations/postgres/0004_dispatch_queue.sql"),
    ),
    (
        5,
        "supplier message ids",
        include_str!("../../../migrations/postgres/0005_supplier_messages.sql"),
    ),
    (
        6,
        "message trace",
        include_str!("../../../migrations/postgres/0006_message_trace.sql"),
    ),
    (
        7,
        "stats, reconciliation and inbox",
        include_str!("../../../migrations/postgres/0007_stats_reconciliation_inbox.sql"),
    ),
    (
        8,
        "uploads and crowd sends",
        include_str!("../../../migrations/postgres/0008_uploads_and_crowd_sends.sql"),
    ),
    (
        9,
        "message timeline by kind and time",
        include_str!("../../../migrations/postgres/0009_message_timeline_at.sql"),
    ),
    (
        10,
        "channel accounts",
        include_str!("../../../migrations/postgres/0010_channel_accounts.sql"),
    ),
    (
        11,
        "inbox delivery cursor",
        include_str!("../../../migrations/postgres/0011_inbox_cursor.sql"),
    ),
    (
        12,
        "live policy",
        include_str!("../../../migrations/postgres/0012_policies.sql"),
    ),
    (
        13,
        "declarative HTTP suppliers",
        include_str!("../../../migrations/postgres/0013_http_suppliers.sql"),
    ),
    (
        14,
        "timeline details read from the log",
        include_str!("../../../migrations/postgres/0014_timeline_without_detail.sql"),
    ),
    (
        15,
        "the log as json",
        include_str!("../../../migrations/postgres/0015_log_as_json.sql"),
    ),
    (
        16,
        "recall requests in log order",
        include_str!("../../../migrations/postgres/0016_recall_requests_index.sql"),
    ),
    (
        17,
        "timeline index of outcomes alone",
        include_str!("../../../migrations/postgres/0017_timeline_outcomes_index.sql"),
    ),
];

const SQLITE: &[Source] = &[
    (
        1,
        "event store",
        include_str!("../../../migrations/sqlite/0001_event_store.sql"),
    ),
    (
        2,
        "tenants and keys",
        include_str!("../../../migrations/sqlite/0002_tenants_and_keys.sql"),
    ),
    (
        3,
        "templates and settings",
        include_str!("../../../migrations/sqlite/0003_templates_and_settings.sql"),
    ),
    (
        4,
        "dispatch queue",
        include_str!("../../../migrations/sqlite/0004_dispatch_queue.sql"),
    ),
    (
        5,
        "supplier message ids",
        include_str!("../../../migrations/sqlite/0005_supplier_messages.sql"),
    ),
    (
        6,
        "message trace",
        include_str!("../../../migrations/sqlite/0006_message_trace.sql"),
    ),
    (
        7,
        "stats, reconciliation and inbox",
        include_str!("../../../migrations/sqlite/0007_stats_reconciliation_inbox.sql"),
    ),
    (
        8,
        "uploads and crowd sends",
        include_str!("../../../migrations/sqlite/0008_uploads_and_crowd_sends.sql"),
    ),
    (
        9,
        "message timeline by kind and time",
        include_str!("../../../migrations/sqlite/0009_message_timeline_at.sql"),
    ),
    (
        10,
        "channel accounts",
        include_str!("../../../migrations/sqlite/0010_channel_accounts.sql"),
    ),
    (
        11,
        "inbox delivery cursor",
        include_str!("../../../migrations/sqlite/0011_inbox_cursor.sql"),
    ),
    (
        12,
        "live policy",
        include_str!("../../../migrations/sqlite/0012_policies.sql"),
    ),
    (
        13,
        "declarative HTTP suppliers",
        include_str!("../../../migrations/sqlite/0013_http_suppliers.sql"),
    ),
    (
        14,
        "timeline details read from the log",
        include_str!("../../../migrations/sqlite/0014_timeline_without_detail.sql"),
    ),
];

fn migrator(sources: &[Source]) -> Migrator {
    let migrations: Vec<Migration> = sources
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

pub(crate) fn postgres() -> Migrator {
    migrator(POSTGRES)
}

pub(crate) fn sqlite() -> Migrator {
    migrator(SQLITE)
}
