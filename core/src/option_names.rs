//! The option names the plugin knows: its own (SPEC §2), the flat 21.6.2 names, and those
//! 21.6.2 accepts for its coordinator and plugin base class (accepted so a 21.6.2
//! configuration keeps working, and ignored). Any other name is a mistake, reported as
//! `ERR_INVALID_CONFIG` with the closest known name (`consolidation: { mod: 'sync' }` would
//! otherwise silently run async).

use crate::error::{Error, ErrorCode, Result};
use serde_json::{Map, Value};

/// Top-level names Tally reads.
const TOP: &[&str] = &[
    "resources",
    // The plugin guide's singular form at the top level.
    "resource",
    "field",
    "fields",
    "consolidation",
    "analytics",
    "locks",
    "garbageCollection",
    "checkpoints",
    "cohort",
    "clock",
    "verbose",
    "debug",
    "logLevel",
    "logger",
    // 21.6.2's flat names.
    "mode",
    "autoConsolidate",
    "consolidationInterval",
    "consolidationWindow",
    "enableAnalytics",
    "transactionRetention",
    "gcInterval",
];

/// Top-level names 21.6.2 accepts that Tally ignores (its coordinator, tickets, workers and
/// plugin base class: Tally coordinates through conditional writes instead).
pub(crate) const IGNORED: &[&str] = &[
    "coordinator",
    "enableCoordinator",
    "ticketBatchSize",
    "ticketTTL",
    "workerClaimLimit",
    "ticketMaxRetries",
    "ticketRetryDelayMs",
    "ticketScanPageSize",
    "heartbeatInterval",
    "heartbeatTTL",
    "epochDuration",
    "coordinatorWorkInterval",
    "workerInterval",
    "analyticsConfig",
    "startupJitterMin",
    "startupJitterMax",
    "coldStartDuration",
    "skipColdStart",
    "heartbeatJitter",
    "epochFencingEnabled",
    "epochGracePeriodMs",
    "namespace",
    "instanceId",
    "slug",
    "storage",
    "name",
    "version",
    "leaseTimeout",
    "workerTimeout",
    "warnSlowRegisterWorkerLogs",
    "database",
    "client",
];

/// The names inside each section.
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "consolidation",
        &[
            "mode",
            "auto",
            "autoConsolidate",
            "interval",
            "window",
            "concurrency",
            "markAppliedConcurrency",
        ],
    ),
    ("analytics", &["enabled", "periods", "metrics"]),
    ("locks", &["timeout"]),
    ("garbageCollection", &["enabled", "interval", "retention"]),
    ("checkpoints", &["enabled", "strategy", "retention"]),
    ("cohort", &["timezone", "granularity"]),
];

/// The known name closest to `name`, when close enough to be a typo.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| {
            (
                strsim::jaro_winkler(&name.to_lowercase(), &k.to_lowercase()),
                k,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

fn unknown(path: &str, suggestion: Option<&str>, prefix: &str) -> Error {
    let hint = match suggestion {
        Some(s) => format!(" (did you mean \"{prefix}{s}\"?)"),
        None => String::new(),
    };
    Error::new(
        ErrorCode::InvalidConfig,
        format!(
            "EventualConsistencyPlugin: unknown option \"{path}\"{hint}",
            path = crate::amount::truncate(path, 60)
        ),
    )
}

/// Rejects option names that are neither Tally's nor 21.6.2's.
pub(crate) fn check(o: &Map<String, Value>) -> Result<()> {
    for (name, value) in o {
        if TOP.contains(&name.as_str()) {
            if let (Some((section, keys)), Value::Object(inner)) =
                (SECTIONS.iter().find(|(s, _)| s == name), value)
            {
                for k in inner.keys() {
                    if !keys.contains(&k.as_str()) {
                        let path = format!("{section}.{k}");
                        let hint = closest(k, keys.iter().copied());
                        return Err(unknown(&path, hint, &format!("{section}.")));
                    }
                }
            }
            continue;
        }
        if IGNORED.contains(&name.as_str()) {
            continue;
        }
        let hint = closest(name, TOP.iter().chain(IGNORED.iter()).copied());
        return Err(unknown(name, hint, ""));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(v: Value) -> Option<String> {
        check(v.as_object().unwrap())
            .err()
            .map(|e| e.message().to_string())
    }

    #[test]
    fn typos_are_named_with_the_closest_option() {
        let m = message(json!({ "resorces": {} })).unwrap();
        assert!(
            m.contains("\"resorces\"") && m.contains("did you mean \"resources\""),
            "{m}"
        );
        let m = message(json!({ "consolidation": { "mod": "sync" } })).unwrap();
        assert!(
            m.contains("consolidation.mod") && m.contains("\"consolidation.mode\""),
            "{m}"
        );
        let m = message(json!({ "zzz": 1 })).unwrap();
        assert!(!m.contains("did you mean"), "{m}");
    }

    #[test]
    fn tally_and_21_6_2_options_pass() {
        let ok = json!({
            "resources": {}, "consolidation": { "mode": "sync", "autoConsolidate": true },
            "enableCoordinator": true, "coordinator": { "anything": 1 }, "ticketTTL": 5,
            "leaseTimeout": 1, "workerTimeout": 1, "warnSlowRegisterWorkerLogs": false,
            "cohort": { "timezone": "UTC", "granularity": "hour" }, "logLevel": "info",
        });
        assert_eq!(message(ok), None);
    }
}
