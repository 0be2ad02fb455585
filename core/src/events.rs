//! Plugin events (SPEC §5) delivered to callbacks and streams.

use crate::error::Error;
use futures::channel::mpsc;
use std::sync::{Arc, Mutex};

/// One event. Names follow `plg:eventual-consistency:<name>` ([`Event::name`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The plugin started (per field).
    Started {
        /// Resource.
        resource: String,
        /// Field.
        field: String,
        /// `cohort.timezone`.
        timezone: String,
    },
    /// The plugin stopped (per field).
    Stopped {
        /// Resource.
        resource: String,
        /// Field.
        field: String,
    },
    /// A consolidation run of one field finished.
    Consolidated {
        /// Resource.
        resource: String,
        /// Field.
        field: String,
        /// Records looked at.
        record_count: u64,
        /// Records consolidated.
        success_count: u64,
        /// Records that failed.
        error_count: u64,
        /// Transactions applied.
        transactions_applied: u64,
        /// Run time.
        duration_ms: u64,
    },
    /// A record failed to consolidate.
    ConsolidationError {
        /// Resource.
        resource: String,
        /// Field.
        field: String,
        /// The record, when known.
        record_id: Option<String>,
        /// What went wrong.
        error: Error,
    },
    /// A GC run of one field finished.
    GcCompleted {
        /// Resource.
        resource: String,
        /// Field.
        field: String,
        /// Objects deleted.
        deleted_count: u64,
        /// Failures.
        error_count: u64,
    },
    /// A GC run failed.
    GcError {
        /// What went wrong.
        error: Error,
    },
}

impl Event {
    /// The full event name, e.g. `plg:eventual-consistency:consolidated`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Started { .. } => "plg:eventual-consistency:started",
            Event::Stopped { .. } => "plg:eventual-consistency:stopped",
            Event::Consolidated { .. } => "plg:eventual-consistency:consolidated",
            Event::ConsolidationError { .. } => "plg:eventual-consistency:consolidation-error",
            Event::GcCompleted { .. } => "plg:eventual-consistency:gc-completed",
            Event::GcError { .. } => "plg:eventual-consistency:gc-error",
        }
    }

    /// The payload as the documentation shows it (camelCase keys; errors as
    /// `{ code, message }`).
    pub fn payload(&self) -> serde_json::Value {
        use serde_json::json;
        let err = |e: &Error| json!({ "code": e.code().as_str(), "message": e.message() });
        match self {
            Event::Started {
                resource,
                field,
                timezone,
            } => {
                json!({ "resource": resource, "field": field, "cohort": { "timezone": timezone } })
            }
            Event::Stopped { resource, field } => json!({ "resource": resource, "field": field }),
            Event::Consolidated {
                resource,
                field,
                record_count,
                success_count,
                error_count,
                transactions_applied,
                duration_ms,
            } => json!({
                "resource": resource, "field": field, "recordCount": record_count,
                "successCount": success_count, "errorCount": error_count,
                "transactionsApplied": transactions_applied, "duration": duration_ms,
            }),
            Event::ConsolidationError {
                resource,
                field,
                record_id,
                error,
            } => {
                json!({ "error": err(error), "resource": resource, "field": field, "recordId": record_id })
            }
            Event::GcCompleted {
                resource,
                field,
                deleted_count,
                error_count,
            } => json!({
                "resource": resource, "field": field, "deletedCount": deleted_count, "errorCount": error_count,
            }),
            Event::GcError { error } => json!({ "error": err(error) }),
        }
    }
}

type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// Delivers events to callbacks and to stream subscribers.
#[derive(Default)]
pub struct EventBus {
    listeners: Mutex<Vec<Listener>>,
    streams: Mutex<Vec<mpsc::UnboundedSender<Event>>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never waits for a lock: a count another thread holds shows as `None`.
        let listeners = self.listeners.try_lock().ok().map(|l| l.len());
        let streams = self.streams.try_lock().ok().map(|s| s.len());
        f.debug_struct("EventBus")
            .field("listeners", &listeners)
            .field("streams", &streams)
            .finish()
    }
}

impl EventBus {
    /// Calls `f` for every event (on the thread that emits it).
    pub fn on(&self, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(f));
    }

    /// A stream of every later event.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded();
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    /// Delivers an event.
    pub fn emit(&self, event: Event) {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for l in listeners {
            l(&event);
        }
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| s.unbounded_send(event.clone()).is_ok());
    }
}
