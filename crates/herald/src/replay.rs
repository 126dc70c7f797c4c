//! `herald replay`: rebuilds projections (`projections::replay`) with a progress line on
//! standard error and a summary line per projection on standard output.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use projections::Projection;
use projections::replay::{self, Progress, ReplayOptions};
use store::Store;
use tokio_util::sync::CancellationToken;

/// Rebuilds `chosen`; more than one from one read of the log (`projections::replay::replay_all`),
/// with one progress line for all of them. Stopped by `shutdown`, a replay leaves its shadow
/// tables behind; the next replay drops them and starts over, and the live tables of a
/// projection not yet swapped in never changed.
pub async fn run(
    store: &Store,
    chosen: &[Projection],
    batch_size: usize,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let options = ReplayOptions { batch_size };
    let mut line = ProgressLine::new(std::io::stderr().is_terminal());
    let mut latest: Vec<Option<Progress>> = vec![None; chosen.len()];
    let mut show = |progress: &Progress| {
        if let Some(slot) = chosen.iter().position(|p| *p == progress.projection) {
            latest[slot] = Some(*progress);
        }
        let text = if chosen.len() == 1 {
            render(progress)
        } else {
            render_all(&latest)
        };
        line.show(&text);
    };
    let replayed = tokio::select! {
        replayed = replay::replay_all(store, chosen, &options, &mut show) => replayed,
        () = shutdown.cancelled() => {
            anyhow::bail!("replay interrupted; the live tables of projections not yet swapped in are unchanged")
        }
    };
    line.finish();
    let names: Vec<&str> = chosen.iter().map(|p| p.name()).collect();
    for summary in replayed.with_context(|| format!("replaying {}", names.join(", ")))? {
        print_summary(&summary);
    }
    Ok(())
}

fn print_summary(summary: &replay::Summary) {
    println!(
        "{}: {} events in {:.2} s ({} events/s)",
        summary.projection.name(),
        thousands(summary.events),
        summary.elapsed.as_secs_f64(),
        thousands(summary.rate().round() as u64),
    );
}

/// A progress line: redrawn in place on a terminal, a line every few seconds in a log.
struct ProgressLine {
    terminal: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl ProgressLine {
    fn new(terminal: bool) -> Self {
        ProgressLine {
            terminal,
            last: None,
            drawn: false,
        }
    }

    fn show(&mut self, text: &str) {
        let every = if self.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(2)
        };
        if self.last.is_some_and(|last| last.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let mut stderr = std::io::stderr().lock();
        // A progress line that cannot be written is not worth failing the replay for.
        let _ = if self.terminal {
            write!(stderr, "\r{text}\x1b[K")
        } else {
            writeln!(stderr, "{text}")
        };
        let _ = stderr.flush();
        self.drawn = true;
    }

    fn finish(&mut self) {
        if self.terminal && self.drawn {
            eprintln!();
        }
    }
}

const BAR: usize = 24;

fn render(progress: &Progress) -> String {
    let span = (progress.head - progress.start).max(1) as f64;
    let done = ((progress.position - progress.start) as f64 / span).clamp(0.0, 1.0);
    let filled = (done * BAR as f64).round() as usize;
    let eta = progress
        .eta()
        .map_or_else(|| "--:--".to_owned(), |eta| clock(eta.as_secs()));
    format!(
        "{} [{}{}] {:>3.0}%  {} events  {} events/s  ETA {eta}",
        progress.projection.name(),
        "#".repeat(filled),
        "-".repeat(BAR - filled),
        done * 100.0,
        thousands(progress.events),
        thousands(progress.rate().round() as u64),
    )
}

/// One line for projections replaying together: each one's share done, then all of them.
fn render_all(latest: &[Option<Progress>]) -> String {
    let started: Vec<&Progress> = latest.iter().flatten().collect();
    let shares: Vec<String> = started
        .iter()
        .map(|p| {
            let span = (p.head - p.start).max(1) as f64;
            let done = ((p.position - p.start) as f64 / span).clamp(0.0, 1.0);
            format!("{} {:.0}%", p.projection.name(), done * 100.0)
        })
        .collect();
    let events: u64 = started.iter().map(|p| p.events).sum();
    let rate: f64 = started.iter().map(|p| p.rate()).sum();
    let eta = started
        .iter()
        .map(|p| p.eta())
        .collect::<Option<Vec<_>>>()
        .and_then(|etas| etas.into_iter().max())
        .map_or_else(|| "--:--".to_owned(), |eta| clock(eta.as_secs()));
    format!(
        "{}  {} events  {} events/s  ETA {eta}",
        shares.join("  "),
        thousands(events),
        thousands(rate.round() as u64),
    )
}

pub(crate) fn clock(seconds: u64) -> String {
    if seconds >= 3600 {
        format!(
            "{}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )
    } else {
        format!("{}:{:02}", seconds / 60, seconds % 60)
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_read_easily() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(clock(75), "1:15");
        assert_eq!(clock(3_725), "1:02:05");
    }

    #[test]
    fn the_line_shows_the_share_done_the_rate_and_what_is_left() {
        let progress = Progress {
            projection: Projection::Trace,
            events: 50_000,
            position: 60_000,
            start: 0,
            head: 120_000,
            elapsed: Duration::from_secs(2),
        };
        let line = render(&progress);
        assert!(
            line.starts_with("trace [############------------]  50%"),
            "{line}"
        );
        assert!(
            line.contains("50,000 events  25,000 events/s  ETA 0:02"),
            "{line}"
        );
    }

    #[test]
    fn projections_replayed_together_share_one_line() {
        let progress = |projection, events, position, seconds| {
            Some(Progress {
                projection,
                events,
                position,
                start: 0,
                head: 100_000,
                elapsed: Duration::from_secs(seconds),
            })
        };
        let line = render_all(&[
            progress(Projection::Trace, 20_000, 25_000, 1),
            None,
            progress(Projection::Stats, 40_000, 50_000, 2),
        ]);
        assert_eq!(
            line,
            "trace 25%  stats 50%  60,000 events  40,000 events/s  ETA 0:03"
        );
    }
}
