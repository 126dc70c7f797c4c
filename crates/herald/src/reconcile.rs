//! `herald reconcile`: what one channel account dispatched on one day, across tenants, beside the
//! supplier's bill (a CSV file), with the gap in percent, flagged beyond a tolerance, and the
//! supplier ids found on one side only.
//!
//! It reads the reconciliation projection after bringing it up to the log's head itself, so it
//! answers for everything recorded when it started, whether or not a server is running (the
//! projection's checkpoint moves by compare-and-set, so it may run beside the server's).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{FixedOffset, NaiveDate};
use projections::Projection;
use projections::reconciliation::{self as recon, Summary, Window};
use store::{CheckpointKey, Store, SubscriptionOptions};
use tokio_util::sync::CancellationToken;

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// What the supplier billed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bill {
    /// The billed count: the sum of the count column, or the number of rows without one.
    pub billed: i64,
    /// The billed message ids, when the bill has an id column.
    pub ids: Option<BTreeSet<String>>,
}

/// A bill that cannot be read: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for BillError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for BillError {}

/// Header names of the supplier's message id, compared without case, spaces, `_` or `-`; the
/// first of these the header has is taken.
pub const ID_COLUMNS: &[&str] = &[
    "suppliermessageid",
    "msgid",
    "messageid",
    "bizid",
    "serialno",
    "sid",
    "smsid",
];

/// Header names of a billed count (aggregate bills, or billed units per message).
pub const COUNT_COLUMNS: &[&str] = &["count", "billed", "billedcount", "quantity", "qty", "units"];

fn normalise(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Reads a bill: a header row, then one row per billed message (with an id column), or rows with
/// a count column (aggregate bills), or both (billed units per message). Blank lines are skipped.
pub fn parse_bill(text: &str) -> Result<Bill, BillError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix('\r').unwrap_or(line)))
        .filter(|(_, line)| !line.trim().is_empty());
    let err = |line: usize, message: String| BillError { line, message };
    let Some((header_line, header)) = lines.next() else {
        return Err(err(
            1,
            "the bill is empty: it needs a header row".to_owned(),
        ));
    };
    let header: Vec<String> = commands::csv::fields(header)
        .map_err(|m| err(header_line, m))?
        .iter()
        .map(|name| normalise(name))
        .collect();
    let column = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| header.iter().position(|h| h == name))
    };
    let (id_column, count_column) = (column(ID_COLUMNS), column(COUNT_COLUMNS));
    if id_column.is_none() && count_column.is_none() {
        return Err(err(
            header_line,
            "the header names no message id column (supplier_message_id, msgid, message_id, \
             BizId, SerialNo, sid, sms_id) and no count column (count, billed, billed_count, \
             quantity, qty, units)"
                .to_owned(),
        ));
    }
    let mut bill = Bill {
        billed: 0,
        ids: id_column.map(|_| BTreeSet::new()),
    };
    for (number, line) in lines {
        let row = commands::csv::fields(line).map_err(|m| err(number, m))?;
        if row.len() != header.len() {
            return Err(err(
                number,
                format!("{} fields, but the header has {}", row.len(), header.len()),
            ));
        }
        let count = match count_column {
            Some(c) => {
                let text = &row[c];
                text.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        err(
                            number,
                            format!("the count {text:?} is not a whole number of 0 or more"),
                        )
                    })?
            }
            None => 1,
        };
        bill.billed = bill
            .billed
            .checked_add(count)
            .ok_or_else(|| err(number, "the billed count overflows".to_owned()))?;
        if let (Some(c), Some(ids)) = (id_column, bill.ids.as_mut()) {
            if row[c].is_empty() {
                return Err(err(number, "the message id is empty".to_owned()));
            }
            ids.insert(row[c].clone());
        }
    }
    Ok(bill)
}

/// The bill's side of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Billed {
    pub billed: i64,
    pub gap_percent: Option<f64>,
    pub flagged: bool,
    /// Ids we dispatched that the bill does not list, and the reverse (with an id column).
    pub ours_only: Option<Vec<String>>,
    pub bill_only: Option<Vec<String>>,
}

/// What `herald reconcile` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub account: String,
    pub date: NaiveDate,
    pub zone: FixedOffset,
    pub tolerance: f64,
    pub ours: Summary,
    pub bill: Option<Billed>,
}

impl Report {
    pub fn flagged(&self) -> bool {
        self.bill.as_ref().is_some_and(|b| b.flagged)
    }
}

/// Applies every event recorded so far to `projection`'s live tables: runs its subscription
/// until its checkpoint reaches the head of the log as it was on entry.
pub async fn catch_up(store: &Store, projection: Projection) -> anyhow::Result<()> {
    let (subscription, category) = (projection.subscription(), projection.category());
    let lag = projections::lag::lag(store, subscription, category).await?;
    if lag.caught_up() {
        return Ok(());
    }
    let target = lag.head;
    let stop = CancellationToken::new();
    let handler = projection.handler(projections::Target::Live);
    let options = SubscriptionOptions {
        filter: projection.filter(),
        poll_interval: Duration::from_millis(50),
        ..SubscriptionOptions::default()
    };
    let key = CheckpointKey::new(subscription, 0);
    let mut run = Box::pin(store::subscription::run(
        store, &key, None, &options, &handler, &stop,
    ));
    let (mut seen, mut moved) = (lag.applied, Instant::now());
    loop {
        tokio::select! {
            result = &mut run => {
                result?;
                bail!("the {} projection stopped before it caught up", projection.name());
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let applied = projections::lag::lag(store, subscription, category)
            .await?
            .applied;
        if applied >= target {
            stop.cancel();
            run.await?;
            return Ok(());
        }
        if applied != seen {
            (seen, moved) = (applied, Instant::now());
        } else if moved.elapsed() > Duration::from_secs(60) {
            bail!(
                "the {} projection made no progress for a minute (see the log)",
                projection.name()
            );
        }
    }
}

/// Reconciles `account`'s `date` (in `zone`) with `bill`.
pub async fn reconcile(
    store: &Store,
    account: &str,
    date: NaiveDate,
    zone: FixedOffset,
    bill: Option<&Bill>,
    tolerance: f64,
) -> anyhow::Result<Report> {
    catch_up(store, Projection::Reconciliation)
        .await
        .context("bringing the reconciliation projection up to date")?;
    let window = Window::day(date, zone);
    let ours = recon::summary(store, account, &window, None).await?;
    let bill = match bill {
        None => None,
        Some(bill) => {
            let gap = recon::gap_percent(ours.dispatched, bill.billed);
            let (ours_only, bill_only) = match &bill.ids {
                None => (None, None),
                Some(billed) => {
                    let dispatched: BTreeSet<String> =
                        recon::supplier_ids(store, account, &window, None, None, None)
                            .await?
                            .into_iter()
                            .collect();
                    (
                        Some(dispatched.difference(billed).cloned().collect()),
                        Some(billed.difference(&dispatched).cloned().collect()),
                    )
                }
            };
            Some(Billed {
                billed: bill.billed,
                gap_percent: gap,
                flagged: recon::flagged(gap, tolerance),
                ours_only,
                bill_only,
            })
        }
    };
    Ok(Report {
        account: account.to_owned(),
        date,
        zone,
        tolerance,
        ours,
        bill,
    })
}

fn percent(gap: Option<f64>) -> String {
    gap.map_or_else(|| "n/a".to_owned(), |g| format!("{g:+.2} %"))
}

/// The report as `format` asks.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => table(report),
        Format::Json => json(report).to_string() + "\n",
        Format::Csv => csv(report),
    }
}

fn table(report: &Report) -> String {
    let mut out = String::new();
    let ours = &report.ours;
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<22}{value}");
    };
    line("account", report.account.clone());
    line("day", format!("{} ({})", report.date, report.zone));
    line("dispatched", ours.dispatched.to_string());
    line("delivered", ours.delivered.to_string());
    line("undelivered", ours.undelivered.to_string());
    line("pending", ours.pending.to_string());
    line("without supplier id", ours.without_supplier_id.to_string());
    let Some(bill) = &report.bill else {
        return out;
    };
    line("billed", bill.billed.to_string());
    let verdict = if bill.flagged {
        format!("FLAGGED: beyond the tolerance of {} %", report.tolerance)
    } else {
        format!("within the tolerance of {} %", report.tolerance)
    };
    line("gap", format!("{}  {verdict}", percent(bill.gap_percent)));
    for (title, ids) in [
        ("ids on our side only", &bill.ours_only),
        ("ids on the bill only", &bill.bill_only),
    ] {
        if let Some(ids) = ids {
            let _ = writeln!(out, "{title} ({}):", ids.len());
            for id in ids {
                let _ = writeln!(out, "  {id}");
            }
        }
    }
    out
}

fn json(report: &Report) -> serde_json::Value {
    let ours = &report.ours;
    let mut value = serde_json::json!({
        "account": report.account,
        "date": report.date.to_string(),
        "zone": report.zone.to_string(),
        "dispatched": ours.dispatched,
        "delivered": ours.delivered,
        "undelivered": ours.undelivered,
        "pending": ours.pending,
        "without_supplier_id": ours.without_supplier_id,
        "tolerance_percent": report.tolerance,
    });
    if let (Some(bill), Some(object)) = (&report.bill, value.as_object_mut()) {
        object.insert("billed".into(), bill.billed.into());
        object.insert("gap_percent".into(), serde_json::json!(bill.gap_percent));
        object.insert("flagged".into(), bill.flagged.into());
        object.insert("ours_only".into(), serde_json::json!(bill.ours_only));
        object.insert("bill_only".into(), serde_json::json!(bill.bill_only));
    }
    value
}

fn csv(report: &Report) -> String {
    let ours = &report.ours;
    let bill = report.bill.as_ref();
    let count = |ids: Option<&Vec<String>>| ids.map_or(String::new(), |ids| ids.len().to_string());
    let quoted = |text: &str| {
        if text.contains([',', '"', '\n']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_owned()
        }
    };
    format!(
        "account,date,zone,dispatched,delivered,undelivered,pending,without_supplier_id,billed,\
         gap_percent,tolerance_percent,flagged,ours_only,bill_only\n\
         {},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        quoted(&report.account),
        report.date,
        report.zone,
        ours.dispatched,
        ours.delivered,
        ours.undelivered,
        ours.pending,
        ours.without_supplier_id,
        bill.map_or(String::new(), |b| b.billed.to_string()),
        bill.and_then(|b| b.gap_percent)
            .map_or(String::new(), |g| format!("{g:.2}")),
        report.tolerance,
        bill.map_or(String::new(), |b| b.flagged.to_string()),
        count(bill.and_then(|b| b.ours_only.as_ref())),
        count(bill.and_then(|b| b.bill_only.as_ref())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Option<BTreeSet<String>> {
        Some(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn a_bill_per_message_counts_rows_and_lists_ids() {
        let text =
            "\u{feff}Date,BizId,Phone\r\n2024-05-01,a1,+86 1\r\n\r\n2024-05-01,\"b,2\",+86 2\r\n";
        assert_eq!(
            parse_bill(text),
            Ok(Bill {
                billed: 2,
                ids: ids(&["a1", "b,2"])
            })
        );
    }

    #[test]
    fn an_aggregate_bill_sums_its_count_column() {
        assert_eq!(
            parse_bill("account,day,Billed Count\nsms-a,2024-05-01,900\nsms-a,2024-05-01,85\n"),
            Ok(Bill {
                billed: 985,
                ids: None
            })
        );
    }

    #[test]
    fn a_bill_with_ids_and_units_counts_units() {
        assert_eq!(
            parse_bill("msgid,units\nx,2\ny,1\n"),
            Ok(Bill {
                billed: 3,
                ids: ids(&["x", "y"])
            })
        );
    }

    #[test]
    fn bad_bills_say_which_line() {
        let e = |text: &str| match parse_bill(text) {
            Ok(bill) => panic!("{text:?} read as {bill:?}"),
            Err(error) => error,
        };
        assert_eq!(e("").line, 1);
        assert_eq!(e("\n\nphone,price\n").line, 3);
        assert!(e("phone,price\n").message.contains("no message id column"));
        assert_eq!(
            e("msgid,count\na,1\nb,x\n"),
            BillError {
                line: 3,
                message: "the count \"x\" is not a whole number of 0 or more".to_owned()
            }
        );
        assert_eq!(e("msgid,count\na,1,3\n").line, 2);
        assert_eq!(e("msgid\n\"a\n").line, 2);
        assert_eq!(e("msgid\n\n\n,\n").line, 4);
        assert_eq!(e("count\n-1\n").line, 2);
    }
}
