//! Metrics: the run counters, a plain snapshot ([`crate::Engine::metrics`]) and the same as
//! Prometheus text ([`crate::Engine::metrics_text`], exposition format 0.0.4).
//!
//! Requests are counted by the store a connection string opens (see
//! [`crate::store::counting`]): by kind, conflicts (a conditional write refused), failures
//! and retries. The engine keeps the consolidation runs: a latency histogram and, per field,
//! when a run last finished without errors. Pending transactions and dead letters are read
//! when asked, one LIST page per 1,000 of them per field, as `getStatus()` does.

use crate::store::counting::Counts as RequestCounts;
use serde_json::{Value, json};
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds (ms) of the consolidation latency buckets; a last one holds the rest.
pub const LATENCY_BUCKETS_MS: [u64; 12] =
    [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

/// A histogram of consolidation run durations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Runs per bucket of [`LATENCY_BUCKETS_MS`] (not cumulative), then the runs above the
    /// last bound.
    pub counts: [u64; LATENCY_BUCKETS_MS.len() + 1],
    /// Sum of the durations, ms.
    pub sum_ms: u64,
}

impl Histogram {
    /// Counts one run of `ms`.
    pub fn observe(&mut self, ms: u64) {
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c = c.saturating_add(1);
        }
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }

    /// Runs counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }

    fn to_json(&self) -> Value {
        let mut cumulative = 0u64;
        let buckets: Vec<Value> = LATENCY_BUCKETS_MS
            .iter()
            .zip(self.counts.iter())
            .map(|(le, c)| {
                cumulative = cumulative.saturating_add(*c);
                json!({ "le": le, "count": cumulative })
            })
            .collect();
        json!({ "count": self.count(), "sumMs": self.sum_ms, "buckets": buckets })
    }
}

/// Counters of an engine's consolidation runs, reported by [`crate::Engine::status`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStatus {
    /// Consolidation runs (passes, `consolidate_all`, explicit consolidations).
    pub runs: u64,
    /// Epoch ms of the last run.
    pub last_run_ms: Option<i64>,
    /// Records consolidated successfully.
    pub records_consolidated: u64,
    /// Transactions applied.
    pub transactions_applied: u64,
    /// Errors seen.
    pub errors: u64,
    /// GC runs.
    pub gc_runs: u64,
    /// Writes of consolidated values the host database refused (its own validation).
    pub host_refusals: u64,
    /// Durations of the runs.
    pub latency: Histogram,
    /// Per `resource.field`, when a run last finished without errors (epoch ms).
    pub last_success_ms: std::collections::BTreeMap<String, i64>,
}

/// An engine's run counters, shared by the components that count.
#[derive(Debug, Default)]
pub(crate) struct RunLog(Mutex<RunStatus>);

impl RunLog {
    fn with(&self, f: impl FnOnce(&mut RunStatus)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> RunStatus {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counts a GC run.
    pub(crate) fn note_gc_run(&self) {
        self.with(|s| s.gc_runs = s.gc_runs.saturating_add(1));
    }

    /// Counts a write of consolidated values the host database refused.
    pub(crate) fn note_host_refusal(&self) {
        self.with(|s| s.host_refusals = s.host_refusals.saturating_add(1));
    }

    /// Counts a consolidation run of `resource.field` that started at `started` and finished
    /// at `now`, `duration_ms` long: `ok` records consolidated, `errors` failed, `applied`
    /// transactions applied.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn note_run(
        &self,
        resource: &str,
        field: &str,
        ok: u64,
        errors: u64,
        applied: u64,
        started: i64,
        now: i64,
        duration_ms: u64,
    ) {
        self.with(|s| {
            s.runs = s.runs.saturating_add(1);
            s.last_run_ms = Some(started);
            s.records_consolidated = s.records_consolidated.saturating_add(ok);
            s.transactions_applied = s.transactions_applied.saturating_add(applied);
            s.errors = s.errors.saturating_add(errors);
            s.latency.observe(duration_ms);
            if errors == 0 {
                s.last_success_ms.insert(format!("{resource}.{field}"), now);
            }
        });
    }
}

/// The `metrics()` snapshot (see [`crate::Engine::metrics`]) of the request counts `c`,
/// the run counters `s` and one entry per field.
pub(crate) fn snapshot(c: RequestCounts, s: &RunStatus, fields: Vec<Value>) -> Value {
    json!({
        "requests": {
            "get": c.get, "put": c.put, "list": c.list, "delete": c.delete,
            "deleteMany": c.delete_many, "conflicts": c.conflicts, "failures": c.failures,
            "retries": c.retries,
        },
        "consolidation": {
            "runs": s.runs,
            "errors": s.errors,
            "recordsConsolidated": s.records_consolidated,
            "transactionsApplied": s.transactions_applied,
            "hostRefusals": s.host_refusals,
            "gcRuns": s.gc_runs,
            "latencyMs": s.latency.to_json(),
        },
        "fields": fields,
    })
}

/// A [`snapshot`] as Prometheus text exposition (names prefixed `tally_`).
pub(crate) fn prometheus(m: &Value) -> String {
    let mut out = String::new();
    let r = &m["requests"];
    family(
        &mut out,
        "tally_requests_total",
        "counter",
        "Store requests by kind.",
    );
    for (kind, key) in [
        ("get", "get"),
        ("put", "put"),
        ("list", "list"),
        ("delete", "delete"),
        ("delete_many", "deleteMany"),
    ] {
        sample(&mut out, "tally_requests_total", &[("kind", kind)], &r[key]);
    }
    let counters = [
        (
            "tally_request_conflicts_total",
            "Conditional writes refused (the object changed, existed or was gone).",
            &r["conflicts"],
        ),
        (
            "tally_request_failures_total",
            "Store requests that failed (after retries).",
            &r["failures"],
        ),
        (
            "tally_request_retries_total",
            "Store requests sent again after a transient failure.",
            &r["retries"],
        ),
    ];
    let c = &m["consolidation"];
    let runs = [
        (
            "tally_consolidation_runs_total",
            "Consolidation runs of a field.",
            &c["runs"],
        ),
        (
            "tally_consolidation_errors_total",
            "Records that failed to consolidate.",
            &c["errors"],
        ),
        (
            "tally_records_consolidated_total",
            "Records consolidated.",
            &c["recordsConsolidated"],
        ),
        (
            "tally_transactions_applied_total",
            "Transactions applied.",
            &c["transactionsApplied"],
        ),
        (
            "tally_host_refusals_total",
            "Consolidated values the host database refused.",
            &c["hostRefusals"],
        ),
        (
            "tally_gc_runs_total",
            "Garbage collection runs.",
            &c["gcRuns"],
        ),
    ];
    for (name, help, v) in counters.into_iter().chain(runs) {
        family(&mut out, name, "counter", help);
        sample(&mut out, name, &[], v);
    }
    let h = &c["latencyMs"];
    let name = "tally_consolidation_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Duration of consolidation runs.",
    );
    for b in h["buckets"].as_array().into_iter().flatten() {
        let le = seconds(b["le"].as_u64().unwrap_or(0));
        sample(
            &mut out,
            &format!("{name}_bucket"),
            &[("le", &le)],
            &b["count"],
        );
    }
    sample(
        &mut out,
        &format!("{name}_bucket"),
        &[("le", "+Inf")],
        &h["count"],
    );
    let sum = Value::String(seconds(h["sumMs"].as_u64().unwrap_or(0)));
    sample(&mut out, &format!("{name}_sum"), &[], &sum);
    sample(&mut out, &format!("{name}_count"), &[], &h["count"]);
    let gauges = [
        (
            "tally_pending_transactions",
            "Transactions waiting to be consolidated.",
            "pending",
        ),
        (
            "tally_dead_letters",
            "Transactions set aside because they could not be applied.",
            "deadLetters",
        ),
        (
            "tally_last_success_timestamp_seconds",
            "When a consolidation run of the field last finished without errors.",
            "lastSuccessMs",
        ),
    ];
    for (name, help, key) in gauges {
        family(&mut out, name, "gauge", help);
        for f in m["fields"].as_array().into_iter().flatten() {
            let v = match key {
                "lastSuccessMs" => match f[key].as_u64() {
                    Some(ms) => Value::String(seconds(ms)),
                    None => continue,
                },
                _ => f[key].clone(),
            };
            let labels = [
                ("resource", f["resource"].as_str().unwrap_or("")),
                ("field", f["field"].as_str().unwrap_or("")),
            ];
            sample(&mut out, name, &labels, &v);
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], v: &Value) {
    let value = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".to_string(),
    };
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
        return;
    }
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
}

/// A label value as the exposition format writes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn seconds(ms: u64) -> String {
    let s = format!("{}.{:03}", ms / 1000, ms % 1000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_bucket_and_print_as_seconds() {
        let mut h = Histogram::default();
        for ms in [0, 5, 6, 40_000] {
            h.observe(ms);
        }
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[LATENCY_BUCKETS_MS.len()], 1);
        assert_eq!((h.count(), h.sum_ms), (4, 40_011));
        assert_eq!(h.to_json()["buckets"][1]["count"], 3);
        assert_eq!(
            [seconds(2500), seconds(1000), seconds(5)],
            ["2.5", "1", "0.005"]
        );
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
