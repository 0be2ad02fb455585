//! Golden analytics fixtures shared by Rust, the Node addon, WASM in Node and WASM in Chromium.
//!
//! `tests/golden/analytics.json` holds transactions generated from a seed, and queries with
//! the answers the pure query planner gives. This test regenerates the whole file and
//! requires it to be byte-identical to the committed one (`TALLY_UPDATE_GOLDEN=1` rewrites
//! it after an intended change). The other runtimes assert the same answers:
//! `npm/test/golden.test.mjs` (addon and WASM in Node) and the dashboard test (Chromium).

use serde_json::{Value, json};
use tally_core::Arg;
use tally_core::analytics::Fact;
use tally_core::calendar::{iso_timestamp, parse_timestamp, parse_zone};
use tally_core::clock::{IdSource, SplitMix};
use tally_core::queries::{QueryEnv, QueryPlan};

const SEED: u64 = 20251109;
const ZONES: [&str; 3] = ["UTC", "America/New_York", "Australia/Lord_Howe"];

/// 400 transactions over 6 records from March to November 2025 (both DST changes of New
/// York and Lord Howe), amounts with two decimals, one in ten still pending.
fn transactions() -> Vec<Value> {
    let rng = SplitMix::seeded(SEED);
    let start = parse_timestamp("2025-03-01T00:00:00Z").unwrap();
    let span = parse_timestamp("2025-12-01T00:00:00Z").unwrap() - start;
    let mut out: Vec<(i64, Value)> = (0..400)
        .map(|i| {
            let r = rng.next_u64();
            // Half of the transactions cluster around the DST days, so those charts have data.
            let ts = if i % 2 == 0 {
                let days = ["2025-03-09", "2025-04-06", "2025-10-05", "2025-11-02"];
                let day = days[(r % 4) as usize];
                parse_timestamp(&format!("{day}T00:00:00Z")).unwrap() - 14 * 3_600_000
                    + ((r >> 8) % (48 * 3_600_000)) as i64
            } else {
                start + ((r >> 8) % span as u64) as i64
            };
            let op = match (r >> 40) % 10 {
                0 => "set",
                1..=3 => "sub",
                _ => "add",
            };
            let cents = ((r >> 44) % 10_000) as i64 + 1;
            let value: Value =
                serde_json::from_str(&format!("{}.{:02}", cents / 100, cents % 100)).unwrap();
            (
                ts,
                json!({
                    "id": format!("tx-{i:04}"),
                    "originalId": format!("r{}", (r >> 32) % 6),
                    "field": "amount",
                    "fieldPath": "amount",
                    "value": value,
                    "operation": op,
                    "timestamp": iso_timestamp(ts),
                    "applied": !(r >> 56).is_multiple_of(10),
                }),
            )
        })
        .collect();
    out.sort_by(|a, b| (a.0, a.1["id"].as_str()).cmp(&(b.0, b.1["id"].as_str())));
    out.into_iter().map(|x| x.1).collect()
}

/// The queries, with the plugin's arguments after (resource, field).
fn queries() -> Vec<(&'static str, Value)> {
    vec![
        ("getDayByHour", json!(["2025-03-09", { "fillGaps": true }])),
        ("getDayByHour", json!(["2025-11-02", { "fillGaps": true }])),
        ("getDayByHour", json!(["2025-10-05", { "fillGaps": true }])),
        (
            "getDayByHour",
            json!(["2025-04-06", { "fillGaps": true, "includePending": true }]),
        ),
        ("getWeekByDay", json!(["2025-W45", { "fillGaps": true }])),
        ("getWeekByHour", json!(["2025-W10"])),
        ("getMonthByDay", json!(["2025-06", { "fillGaps": true }])),
        ("getMonthByHour", json!(["2025-03"])),
        ("getMonthByWeek", json!(["2025-11", { "fillGaps": true }])),
        ("getYearByDay", json!(["2025"])),
        ("getYearByWeek", json!(["2025", { "fillGaps": true }])),
        (
            "getYearByMonth",
            json!(["2025", { "fillGaps": true, "breakdown": "operations" }]),
        ),
        ("getLastNHours", json!([30, { "fillGaps": true }])),
        (
            "getLastNDays",
            json!([10, { "fillGaps": true, "includePending": true }]),
        ),
        ("getLastNWeeks", json!([6])),
        ("getLastNMonths", json!([4, { "fillGaps": true }])),
        ("getLastNPeriods", json!(["week", 3, { "fillGaps": true }])),
        (
            "getAnalytics",
            json!([{ "period": "day", "startDate": "2025-03-07", "endDate": "2025-03-11", "recordId": "r1" }]),
        ),
        ("getAnalytics", json!([{ "period": "month" }])),
        (
            "getAnalyticsByTimeRange",
            json!(["hour", { "start": "2025-11-01T22:00:00Z", "end": "2025-11-02T12:00:00Z" }]),
        ),
        (
            "getTopRecords",
            json!([{ "period": "month", "date": "2025-06", "sortBy": "totalValue", "limit": 3 }]),
        ),
        (
            "getTopRecords",
            json!([{ "period": "day", "cohort": "2025-03-09", "metric": "transactionCount" }]),
        ),
    ]
}

fn generate() -> Value {
    let txs = transactions();
    let now = "2025-11-03T05:30:00Z";
    let mut cases = Vec::new();
    for zone in ZONES {
        let env = QueryEnv {
            zone: parse_zone(zone).unwrap(),
            now_ms: parse_timestamp(now).unwrap(),
            metrics: ["count", "sum", "avg", "min", "max"]
                .map(String::from)
                .to_vec(),
        };
        for (function, args) in queries() {
            let list: Vec<Arg> = args
                .as_array()
                .unwrap()
                .iter()
                .map(Arg::from_json)
                .collect();
            let plan = QueryPlan::parse(function, &list, &env).unwrap();
            let facts: Vec<Fact> = txs
                .iter()
                .map(|t| Fact::from_json(t).unwrap())
                .filter(|(f, applied)| {
                    (*applied || plan.include_pending())
                        && plan.record().is_none_or(|r| &*f.record_id == r)
                })
                .map(|(f, _)| f)
                .collect();
            cases.push(json!({
                "timezone": zone,
                "function": function,
                "args": args,
                "expected": plan.execute(&facts, &env),
            }));
        }
    }
    json!({
        "seed": SEED,
        "now": now,
        "resource": "sales",
        "field": "amount",
        "transactions": txs,
        "cases": cases,
    })
}

/// JSON with one transaction or case per line: small, and diffs show what changed.
fn one_item_per_line(v: &Value) -> String {
    let mut out = String::from("{\n");
    let fields: Vec<String> = v
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, x)| match x {
            Value::Array(items) => {
                let lines: Vec<String> = items.iter().map(|i| format!("    {i}")).collect();
                format!("  {k:?}: [\n{}\n  ]", lines.join(",\n"))
            }
            other => format!("  {k:?}: {other}"),
        })
        .collect();
    out += &fields.join(",\n");
    out + "\n}\n"
}

#[test]
fn golden_analytics_fixture_is_what_the_planner_computes() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/analytics.json");
    let text = one_item_per_line(&generate());
    if std::env::var_os("TALLY_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .expect("tests/golden/analytics.json exists (TALLY_UPDATE_GOLDEN=1 cargo test --test golden writes it)");
    assert!(
        committed == text,
        "the analytics answers changed; if intended, rerun with TALLY_UPDATE_GOLDEN=1 and review the diff"
    );
    let v: Value = serde_json::from_str(&committed).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), ZONES.len() * queries().len());
    // The fixture is not trivial: most answers have points with transactions in them.
    let with_data = cases
        .iter()
        .filter(|c| {
            c["expected"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["count"].as_u64().unwrap_or(1) > 0)
        })
        .count();
    assert!(
        with_data * 10 >= cases.len() * 8,
        "{with_data} of {} cases have data",
        cases.len()
    );
}
