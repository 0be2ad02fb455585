//! What one engine owns — configuration, ports, reducers, the stamp, events, run counters,
//! the fold's local knowledge, missing records and released leases — the builder that makes
//! it, and the borrowed view of it each component works through (never new state per call:
//! one `FoldCache`, one missing map, one `RunLog` per engine).

use crate::admin::Admin;
use crate::analytics_view::AnalyticsView;
use crate::clock::{Clock, IdSource, Sleeper, SplitMix, SystemClock, default_sleeper};
use crate::config::PluginConfig;
use crate::consolidate::Consolidator;
use crate::dead_letters::DeadLetters;
use crate::events::EventBus;
use crate::fold::{FoldCache, Folder};
use crate::gc::Gc;
use crate::history::History;
use crate::inspect::Inspector;
use crate::keys::Layout;
use crate::metrics::RunLog;
use crate::pass::Pass;
use crate::ports::{Ports, Reducers};
use crate::queries::Queries;
use crate::records::RecordAccess;
use crate::store::{SharedStore, Version};
use crate::verify::Verifier;
use crate::write::Writer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The state of one engine; components borrow it through the views below.
pub(super) struct Parts {
    pub(super) config: PluginConfig,
    ports: Ports,
    pub(super) reducers: Reducers,
    stamp: Mutex<(i64, u64)>,
    pub(super) events: EventBus,
    pub(super) runs: RunLog,
    fold_local: FoldCache,
    /// Records found missing (deleted, or not created yet), with when a pass tries them again
    /// and the wait after that (see `Consolidator::note_missing`).
    missing: Mutex<HashMap<String, (i64, i64)>>,
    /// The version of each pass lease as this engine released it (see [`Pass`]).
    released_leases: Mutex<HashMap<String, Version>>,
}

impl Parts {
    /// The ports: store, layout, records, clock, sleeper and ids.
    pub(super) fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The analytics fold (see [`crate::fold`]).
    pub(super) fn folder(&self) -> Folder<'_> {
        Folder {
            ports: &self.ports,
            local: &self.fold_local,
        }
    }

    /// The exactly-once consolidation (see [`crate::consolidate`]).
    pub(super) fn consolidator(&self) -> Consolidator<'_> {
        Consolidator {
            ports: &self.ports,
            config: &self.config,
            folder: self.folder(),
            reducers: &self.reducers,
            events: &self.events,
            runs: &self.runs,
            missing: &self.missing,
        }
    }

    /// Mutations and carried-over transactions.
    pub(super) fn writer(&self) -> Writer<'_> {
        Writer {
            ports: &self.ports,
            config: &self.config,
            stamp: &self.stamp,
            consolidator: self.consolidator(),
        }
    }

    /// Consolidation runs, on demand and in the background.
    pub(super) fn pass(&self) -> Pass<'_> {
        Pass {
            ports: &self.ports,
            config: &self.config,
            events: &self.events,
            runs: &self.runs,
            leases: &self.released_leases,
            consolidator: self.consolidator(),
        }
    }

    /// A field's stored transactions, and recalculation.
    pub(super) fn history(&self) -> History<'_> {
        History {
            ports: &self.ports,
            config: &self.config,
            consolidator: self.consolidator(),
        }
    }

    /// Materialized analytics.
    fn view(&self) -> AnalyticsView<'_> {
        AnalyticsView {
            ports: &self.ports,
            config: &self.config,
            consolidator: self.consolidator(),
        }
    }

    /// Status, cohort stats and metrics.
    pub(super) fn admin(&self) -> Admin<'_> {
        Admin {
            ports: &self.ports,
            config: &self.config,
            runs: &self.runs,
            history: self.history(),
            view: self.view(),
        }
    }

    /// The analytics query functions.
    pub(super) fn queries(&self) -> Queries<'_> {
        Queries {
            ports: &self.ports,
            config: &self.config,
            history: self.history(),
            view: self.view(),
        }
    }

    /// Garbage collection.
    pub(super) fn gc(&self) -> Gc<'_> {
        Gc {
            ports: &self.ports,
            config: &self.config,
            events: &self.events,
            runs: &self.runs,
            history: self.history(),
        }
    }

    /// Dead letters.
    pub(super) fn dead_letters(&self) -> DeadLetters<'_> {
        DeadLetters {
            ports: &self.ports,
            config: &self.config,
            consolidator: self.consolidator(),
        }
    }

    /// The CLI's operator views.
    pub(super) fn inspector(&self) -> Inspector<'_> {
        Inspector {
            ports: &self.ports,
            config: &self.config,
            consolidator: self.consolidator(),
            dead_letters: self.dead_letters(),
        }
    }

    /// History checks.
    pub(super) fn verifier(&self) -> Verifier<'_> {
        Verifier {
            ports: &self.ports,
            config: &self.config,
            history: self.history(),
        }
    }
}

/// Builder of an [`Engine`](super::Engine).
pub struct EngineBuilder {
    config: PluginConfig,
    store: SharedStore,
    prefix: String,
    records: Arc<dyn RecordAccess>,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    ids: Arc<dyn IdSource>,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// A builder with the system clock, tokio's sleeper and an entropy-seeded id source.
    pub(super) fn new(
        config: PluginConfig,
        store: SharedStore,
        prefix: &str,
        records: Arc<dyn RecordAccess>,
    ) -> EngineBuilder {
        EngineBuilder {
            config,
            store,
            prefix: prefix.to_string(),
            records,
            clock: Arc::new(SystemClock),
            sleeper: default_sleeper(),
            ids: Arc::new(SplitMix::from_entropy()),
        }
    }

    /// Uses this clock for timestamps, cohorts and GC ages.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Uses this sleeper for retry backoff.
    pub fn sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }
    /// Uses this random source for ids and jitter.
    pub fn ids(mut self, ids: Arc<dyn IdSource>) -> Self {
        self.ids = ids;
        self
    }
    /// Builds the engine.
    pub fn build(self) -> Arc<super::Engine> {
        Arc::new(super::Engine {
            parts: Parts {
                config: self.config,
                ports: Ports {
                    layout: Layout::new(&self.prefix),
                    store: self.store,
                    records: self.records,
                    clock: self.clock,
                    sleeper: self.sleeper,
                    ids: self.ids,
                },
                reducers: Reducers::default(),
                stamp: Mutex::new((0, 0)),
                events: EventBus::default(),
                runs: RunLog::default(),
                fold_local: FoldCache::default(),
                missing: Mutex::default(),
                released_leases: Mutex::default(),
            },
        })
    }
}
