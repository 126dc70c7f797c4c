//! Process metrics in the Prometheus text format, and ([`trace`]) the helpers that keep one
//! message's spans in one distributed trace.
//!
//! Code that counts calls [`counter`] or [`observe`] on the process's [`global`] registry; the
//! server renders it at `/metrics` ([`Registry::render`]) together with gauges it reads from the
//! store when scraped (queue depth, projection lag), given as [`Gauge`]s. A series is a metric
//! name and its label values; names and label names are static, label values are escaped.
//!
//! One mutex guards the registry: an update is a map lookup and an add, far below the cost of
//! the store write or the supplier call it counts.

pub mod trace;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// Upper bounds, in seconds, of the latency histograms' buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The registry of this process.
pub fn global() -> &'static Registry {
    static GLOBAL: OnceLock<Registry> = OnceLock::new();
    GLOBAL.get_or_init(Registry::default)
}

/// Adds `by` to the counter `name` with `labels` in the [`global`] registry.
pub fn counter(name: &'static str, help: &'static str, labels: &[(&'static str, &str)], by: u64) {
    global().add(name, help, labels, by);
}

/// Records `seconds` in the latency histogram `name` with `labels` in the [`global`] registry.
pub fn observe(
    name: &'static str,
    help: &'static str,
    labels: &[(&'static str, &str)],
    seconds: f64,
) {
    global().observe(name, help, labels, seconds);
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
enum Family {
    Counter(BTreeMap<Labels, u64>),
    Histogram(BTreeMap<Labels, Histogram>),
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or below each of [`LATENCY_BUCKETS`] (not cumulative).
    buckets: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Counters and histograms by name.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, (&'static str, Family)>>,
}

/// A value read when the metrics are scraped.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

fn owned(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

impl Registry {
    pub fn add(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        by: u64,
    ) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let (_, family) = families
            .entry(name)
            .or_insert_with(|| (help, Family::Counter(BTreeMap::new())));
        if let Family::Counter(series) = family {
            *series.entry(owned(labels)).or_default() += by;
        }
    }

    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        seconds: f64,
    ) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let (_, family) = families
            .entry(name)
            .or_insert_with(|| (help, Family::Histogram(BTreeMap::new())));
        if let Family::Histogram(series) = family {
            let histogram = series.entry(owned(labels)).or_default();
            if let Some(at) = LATENCY_BUCKETS.iter().position(|le| seconds <= *le) {
                histogram.buckets[at] += 1;
            }
            histogram.sum += seconds;
            histogram.count += 1;
        }
    }

    /// The counter's current value (0 when it was never counted).
    pub fn counter_value(&self, name: &str, labels: &[(&'static str, &str)]) -> u64 {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        match families.get(name) {
            Some((_, Family::Counter(series))) => {
                series.get(&owned(labels)).copied().unwrap_or_default()
            }
            _ => 0,
        }
    }

    /// Everything, then `gauges`, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::new();
        {
            let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
            for (name, (help, family)) in families.iter() {
                match family {
                    Family::Counter(series) => {
                        header(&mut out, name, help, "counter");
                        for (labels, value) in series {
                            sample(&mut out, name, "", labels, None, *value as f64);
                        }
                    }
                    Family::Histogram(series) => {
                        header(&mut out, name, help, "histogram");
                        for (labels, histogram) in series {
                            let mut cumulative = 0;
                            for (le, n) in LATENCY_BUCKETS.iter().zip(histogram.buckets) {
                                cumulative += n;
                                let bound = le.to_string();
                                sample(
                                    &mut out,
                                    name,
                                    "_bucket",
                                    labels,
                                    Some(&bound),
                                    cumulative as f64,
                                );
                            }
                            let count = histogram.count as f64;
                            sample(&mut out, name, "_bucket", labels, Some("+Inf"), count);
                            sample(&mut out, name, "_sum", labels, None, histogram.sum);
                            sample(&mut out, name, "_count", labels, None, count);
                        }
                    }
                }
            }
        }
        let mut by_name: BTreeMap<&str, Vec<&Gauge>> = BTreeMap::new();
        for gauge in gauges {
            by_name.entry(gauge.name).or_default().push(gauge);
        }
        for (name, gauges) in by_name {
            header(&mut out, name, gauges[0].help, "gauge");
            for gauge in gauges {
                sample(&mut out, name, "", &gauge.labels, None, gauge.value);
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(
        out,
        "# HELP {name} {}",
        help.replace('\\', "\\\\").replace('\n', "\\n")
    );
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&'static str, String)],
    le: Option<&str>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Some(le) = le {
        pairs.push(("le", le));
    }
    if !pairs.is_empty() {
        out.push('{');
        for (i, (key, value)) in pairs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_and_gauges_render_as_prometheus_text() {
        let registry = Registry::default();
        registry.add("x_total", "Things.", &[("kind", "a\"b")], 2);
        registry.add("x_total", "Things.", &[("kind", "a\"b")], 3);
        registry.observe("lat_seconds", "Latency.", &[("who", "s")], 0.004);
        registry.observe("lat_seconds", "Latency.", &[("who", "s")], 20.0);
        let text = registry.render(&[Gauge {
            name: "depth",
            help: "Depth.",
            labels: vec![("lane", "SMS.NOTICE".into())],
            value: 7.0,
        }]);
        let expected = "\
# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{who=\"s\",le=\"0.001\"} 0
lat_seconds_bucket{who=\"s\",le=\"0.0025\"} 0
lat_seconds_bucket{who=\"s\",le=\"0.005\"} 1
";
        assert!(text.starts_with(expected), "{text}");
        assert!(text.contains("lat_seconds_bucket{who=\"s\",le=\"10\"} 1\n"));
        assert!(text.contains("lat_seconds_bucket{who=\"s\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("lat_seconds_sum{who=\"s\"} 20.004\n"));
        assert!(text.contains("lat_seconds_count{who=\"s\"} 2\n"));
        assert!(text.contains("# TYPE x_total counter\nx_total{kind=\"a\\\"b\"} 5\n"));
        assert!(text.ends_with("# TYPE depth gauge\ndepth{lane=\"SMS.NOTICE\"} 7\n"));
        assert_eq!(registry.counter_value("x_total", &[("kind", "a\"b")]), 5);
    }
}
