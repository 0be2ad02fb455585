//! Reading materialized analytics: a view of a field's analytics (its fold state, and for
//! answers that add pending transactions the committed inbox entries not folded yet), the
//! packed and top objects as of that view, and the pending transactions it does not hold.
//!
//! An answer that adds pending transactions reads in this order: the pending keys, the fold
//! state, the inbox (each entry it did not fold checked), the objects, the bookkeeping of
//! each pending record, then the fold state again. A pending key its record's bookkeeping
//! says applied by batch `B` (its `done` time is the time in `B`'s name, one of the batch
//! names the bookkeeping keeps) counts unless the view holds `B`'s entry: folded in the
//! state, or committed in the inbox. An entry neither held nor listed was written after the
//! inbox was listed, or folded and deleted before the state was read: a GET tells which (a
//! committed entry is deleted only by a fold, and none ran, see below). The view is read
//! again when an object is ahead of the state or the state changed by the end, so no fold
//! ran between the two reads of the state; then nothing counts twice and nothing committed
//! is missed.

use crate::analytics::materialized::{
    Delta, Packed, Seen, is_top_object, lacks_top, merge_packed, objects_for, top_object,
};
use crate::analytics::points::{Fact, PointSet};
use crate::calendar::Period;
use crate::calendar::{Label, cohort_label};
use crate::config::PluginConfig;
use crate::consolidate::Consolidator;
use crate::error::Result;
use crate::fold::FoldState;
use crate::formats::{FieldState, key_token};
use crate::ports::Ports;
use crate::store::cas::RetryPolicy;
use crate::store::list_all;
use crate::txn::Transaction;
use futures::{StreamExt, TryStreamExt};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How often a view is read again when objects moved ahead of it meanwhile.
const VIEW_ATTEMPTS: RetryPolicy = RetryPolicy::AtMost(8);
/// How far past the first fold that carried top objects a cohort must begin to be answered
/// from them: transactions are stamped by their writers' clocks, folds by the folder's.
const TOP_MARGIN_MS: i64 = 86_400_000;

/// Per record id, the count and sum of its transactions.
pub(crate) type RecordTotals = BTreeMap<String, (u64, Decimal)>;

/// What materialized reads see (see the module doc).
pub(crate) struct View {
    state: FoldState,
    /// Committed entries not folded in `state`, merged by object.
    extra: Delta,
    /// The names of those entries.
    taken: BTreeSet<String>,
    /// Entries listed whose batch was not known committed.
    left_out: BTreeSet<String>,
    /// Whether the inbox was read (then objects ahead of the state make it read again).
    with_inbox: bool,
    /// Whether some committed entry taken from the inbox was written by a version before top
    /// objects (then top records are answered from the journals).
    old_entries: bool,
}

impl View {
    /// Whether the view holds inbox entry `name`: `Some(true)` folded in its state or taken
    /// from the inbox, `Some(false)` listed and left out, `None` not seen.
    fn holds(&self, name: &str) -> Option<bool> {
        if self.taken.contains(name) || self.state.holds(name) {
            Some(true)
        } else if self.left_out.contains(name) {
            Some(false)
        } else {
            None
        }
    }
}

/// The labels of the top objects whose points add up to the cohorts asked for: the cohort
/// `date` itself when its cohorts of `period` make it up exactly (the hours of a day, week or
/// month; the days of a week or month), the months of a year (except for weeks), else
/// `labels`; `None` for every cohort (all time: the months).
pub(crate) fn top_cover(
    period: Period,
    date: Option<&str>,
    labels: Option<&[Label]>,
) -> Option<Vec<Label>> {
    let labels = labels?;
    let Some(date) = date else {
        return Some(labels.to_vec());
    };
    let year = date.len() == 4 && date.bytes().all(|b| b.is_ascii_digit());
    if year && period != Period::Week {
        return Some((1..=12).map(|m| format!("{date}-{m:02}")).collect());
    }
    let exact = match Period::of_label(date) {
        Some(unit) if unit == period => true,
        Some(Period::Day | Period::Week | Period::Month) => period == Period::Hour,
        _ => false,
    } || (period == Period::Day
        && matches!(Period::of_label(date), Some(Period::Week | Period::Month)));
    Some(if exact {
        vec![date.to_string()]
    } else {
        labels.to_vec()
    })
}

/// Reads a field's materialized analytics as of one view of its fold.
#[derive(Clone, Copy)]
pub(crate) struct AnalyticsView<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// The plugin configuration.
    pub(crate) config: &'a PluginConfig,
    /// The exactly-once consolidation (and the pending reads).
    pub(crate) consolidator: Consolidator<'a>,
}

impl<'a> AnalyticsView<'a> {
    /// A view of a field's analytics; `with_inbox` also takes in the committed inbox
    /// entries not folded yet (one LIST, and two GETs per entry this engine has not seen).
    async fn analytics_view(&self, resource: &str, field: &str, with_inbox: bool) -> Result<View> {
        if !with_inbox {
            return Ok(View {
                state: self
                    .consolidator
                    .folder
                    .read_fold_state(resource, field)
                    .await?,
                extra: Delta::new(),
                taken: BTreeSet::new(),
                left_out: BTreeSet::new(),
                with_inbox,
                old_entries: false,
            });
        }
        let (state, committed, undecided) = self
            .consolidator
            .folder
            .scan_committed(resource, field)
            .await?;
        let mut extra = Delta::new();
        for (_, delta) in &committed {
            for (o, packed) in delta.iter() {
                merge_packed(extra.entry(o.clone()).or_default(), packed);
            }
        }
        Ok(View {
            state,
            extra,
            taken: committed.iter().map(|(n, _)| n.clone()).collect(),
            left_out: undecided.into_iter().collect(),
            with_inbox,
            old_entries: committed.iter().any(|(_, d)| lacks_top(d)),
        })
    }

    /// Packed objects as of `view` (side by side); `None` when one was written by a fold the
    /// view does not know and the view read the inbox (then it must be read again).
    async fn read_as_of(
        &self,
        resource: &str,
        field: &str,
        view: &View,
        names: Vec<String>,
    ) -> Result<Option<Vec<(String, Packed)>>> {
        let state = &view.state;
        let objects: Vec<(String, Option<Packed>)> = futures::stream::iter(names)
            .map(|name| async move {
                let mut obj = self
                    .consolidator
                    .folder
                    .read_packed(resource, field, &name)
                    .await?;
                if view.with_inbox && obj.fold > state.seq {
                    return Ok((name, None));
                }
                if obj.fold < state.seq
                    && let Some(delta) = state.plan.get(&name)
                {
                    merge_packed(&mut obj.points, delta);
                }
                if let Some(delta) = view.extra.get(&name) {
                    merge_packed(&mut obj.points, delta);
                }
                Ok::<_, crate::error::Error>((name, Some(obj.points)))
            })
            .buffered(16)
            .try_collect()
            .await?;
        Ok(objects
            .into_iter()
            .map(|(name, points)| points.map(|p| (name, p)))
            .collect())
    }

    /// The names of the objects `<kind><rest>` with `keep(rest)`: those stored (one LIST), of
    /// the state's plan and of the view's entries, which may not have been written yet.
    async fn objects_named(
        &self,
        resource: &str,
        field: &str,
        view: &View,
        kind: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        let prefix = self.ports.layout.analytics_object(resource, field, kind);
        let stored = list_all(self.ports.store.as_ref(), &prefix).await?;
        let unwritten = view.state.plan.keys().chain(view.extra.keys());
        let names: BTreeSet<String> = stored
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .chain(unwritten.filter_map(|o| o.strip_prefix(kind)))
            .filter(|rest| keep(rest))
            .map(|rest| format!("{kind}{rest}"))
            .collect();
        Ok(names.into_iter().collect())
    }

    /// The materialized points of `labels` (all of one period), or of every cohort of the
    /// period with data when `labels` is `None`, with the view they were read as of.
    pub(crate) async fn materialized_points(
        &self,
        resource: &str,
        field: &str,
        with_inbox: bool,
        period: Period,
        labels: Option<&[Label]>,
    ) -> Result<(View, PointSet)> {
        let wanted = |label: &str| Period::of_label(label) == Some(period);
        for _ in VIEW_ATTEMPTS.attempts() {
            let view = self.analytics_view(resource, field, with_inbox).await?;
            let names = match labels {
                Some(l) => objects_for(l),
                None => {
                    let kind = if period == Period::Hour { "h/" } else { "y/" };
                    self.objects_named(resource, field, &view, kind, |_| true)
                        .await?
                }
            };
            let Some(objects) = self.read_as_of(resource, field, &view, names).await? else {
                continue;
            };
            let mut out = PointSet::new();
            for (_, points) in objects {
                out.extend(points.into_iter().filter(|(l, _)| wanted(l)));
            }
            return Ok((view, out));
        }
        Err(changing(resource, field))
    }

    /// Per record, the count and sum of its folded transactions in the top objects `cover`
    /// (see [`top_cover`]; every month when `None`), with the view they were read as of.
    /// `None` when some of those cohorts began before folds carried top objects (see
    /// [`crate::fold`]): the caller answers from the journals.
    pub(crate) async fn materialized_top(
        &self,
        resource: &str,
        field: &str,
        cover: Option<&[Label]>,
    ) -> Result<Option<(View, RecordTotals)>> {
        for _ in VIEW_ATTEMPTS.attempts() {
            let view = self.analytics_view(resource, field, true).await?;
            if view.old_entries {
                return Ok(None);
            }
            let since = match (view.state.top, &view.state.version) {
                (_, None) => 0,
                (Some(t), Some(_)) => t,
                (None, Some(_)) => return Ok(None),
            };
            let complete = |label: &str| {
                since == 0
                    || Period::of_label(label).is_some_and(|p| {
                        label
                            > cohort_label(
                                since.saturating_add(TOP_MARGIN_MS),
                                p,
                                self.config.timezone,
                            )
                            .as_str()
                    })
            };
            let names = match cover {
                Some(labels) if labels.iter().all(|l| complete(l)) => {
                    labels.iter().map(|l| top_object(l)).collect()
                }
                Some(_) => return Ok(None),
                None if since > 0 => return Ok(None),
                None => {
                    self.objects_named(resource, field, &view, "t/", |l| {
                        Period::of_label(l) == Some(Period::Month)
                    })
                    .await?
                }
            };
            let Some(objects) = self.read_as_of(resource, field, &view, names).await? else {
                continue;
            };
            let mut by = RecordTotals::new();
            for (name, points) in objects {
                if !is_top_object(&name) {
                    continue;
                }
                for (record, p) in points {
                    let e = by.entry(record).or_default();
                    e.0 = e.0.saturating_add(p.count);
                    e.1 = e.1.saturating_add(p.sum);
                }
            }
            return Ok(Some((view, by)));
        }
        Ok(None)
    }

    /// Of the pending transactions `pending` (listed before `view` was read), those the
    /// objects read as of `view` do not hold, with the cohorts each pending record already
    /// counts in (see the module doc); `None` when the fold state changed since `view` was
    /// read (then read the view again). One GET of bookkeeping per pending record, one of the
    /// fold state, and a GET per inbox entry the view has not seen.
    pub(crate) async fn unfolded_pending(
        &self,
        resource: &str,
        field: &str,
        pending: &[(String, Transaction)],
        view: &View,
    ) -> Result<Option<(Vec<Fact>, HashMap<String, Seen>)>> {
        let mut states: HashMap<String, FieldState> = HashMap::new();
        for (_, tx) in pending {
            if !states.contains_key(&tx.original_id) {
                let state = self
                    .ports
                    .records
                    .bookkeeping(resource, &tx.original_id)
                    .await?
                    .map(|m| FieldState::of(&m, field))
                    .unwrap_or_default();
                states.insert(tx.original_id.clone(), state);
            }
        }
        let inbox = self.ports.layout.analytics_inbox(resource, field);
        let mut facts = Vec::new();
        for (name, tx) in pending {
            let Some(state) = states.get(&tx.original_id) else {
                continue;
            };
            let token = key_token(name);
            let applied_at = state
                .done
                .iter()
                .flatten()
                .find(|(_, t)| t.iter().any(|k| k == token))
                .map(|(at, _)| *at);
            let counts = match applied_at {
                None => true,
                Some(at) => {
                    // The batch that applied it, among those the bookkeeping names; one older
                    // than those was folded long ago.
                    let batch = state
                        .batch
                        .iter()
                        .chain(state.recent.iter())
                        .find(|b| crate::keys::parse_batch(b).and_then(|(_, t)| t) == Some(at));
                    match batch {
                        None => false,
                        Some(b) => {
                            let entry = format!("{}/{b}", crate::keys::id_segment(&tx.original_id));
                            match view.holds(&entry) {
                                Some(held) => !held,
                                None => self
                                    .ports
                                    .store
                                    .get(&format!("{inbox}{entry}"))
                                    .await?
                                    .is_some(),
                            }
                        }
                    }
                }
            };
            if counts {
                facts.push(Fact::from(tx));
            }
        }
        let now = self
            .consolidator
            .folder
            .read_fold_state(resource, field)
            .await?;
        if now.version != view.state.version {
            return Ok(None);
        }
        let seen = states
            .into_iter()
            .map(|(id, s)| (id, Seen::from_json(s.seen.as_ref())))
            .collect();
        Ok(Some((facts, seen)))
    }

    /// Materialized points of `labels` of `period` (see [`Self::materialized_points`]) and
    /// the pending transactions they do not hold, with the cohorts each pending record
    /// already counts in.
    pub(crate) async fn points_with_pending(
        &self,
        resource: &str,
        field: &str,
        period: Period,
        labels: Option<&[Label]>,
    ) -> Result<(PointSet, Vec<Fact>, HashMap<String, Seen>)> {
        let named = self
            .consolidator
            .pending_named(resource, field, None)
            .await?;
        for _ in VIEW_ATTEMPTS.attempts() {
            let (view, points) = self
                .materialized_points(resource, field, true, period, labels)
                .await?;
            if let Some((pending, seen)) = self
                .unfolded_pending(resource, field, &named, &view)
                .await?
            {
                return Ok((points, pending, seen));
            }
        }
        Err(changing(resource, field))
    }

    /// Top records of the top objects `cover` and the pending transactions they do not hold
    /// (of every cohort: the caller picks); `None` when the journals must answer.
    pub(crate) async fn top_with_pending(
        &self,
        resource: &str,
        field: &str,
        cover: Option<&[Label]>,
    ) -> Result<Option<(RecordTotals, Vec<Fact>)>> {
        let named = self
            .consolidator
            .pending_named(resource, field, None)
            .await?;
        for _ in VIEW_ATTEMPTS.attempts() {
            let Some((view, by)) = self.materialized_top(resource, field, cover).await? else {
                return Ok(None);
            };
            if let Some((pending, _)) = self
                .unfolded_pending(resource, field, &named, &view)
                .await?
            {
                return Ok(Some((by, pending)));
            }
        }
        Ok(None)
    }
}

fn changing(resource: &str, field: &str) -> crate::error::Error {
    crate::error::Error::new(
        crate::error::ErrorCode::Conflict,
        format!("analytics of {resource}.{field} kept changing while being read"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(v: &[&str]) -> Vec<Label> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_cohort_made_of_the_cohorts_asked_for_is_read_whole() {
        let hours = own(&["2026-01-05T00", "2026-01-05T01"]);
        let day = Some(own(&["2026-01-05"]));
        assert_eq!(
            top_cover(Period::Hour, Some("2026-01-05"), Some(&hours)),
            day
        );
        assert_eq!(
            top_cover(Period::Day, Some("2026-01-05"), Some(&own(&["2026-01-05"]))),
            day
        );
        let days = own(&["2026-01-05", "2026-01-06"]);
        assert_eq!(
            top_cover(Period::Day, Some("2026-W02"), Some(&days)),
            Some(own(&["2026-W02"]))
        );
        assert_eq!(
            top_cover(Period::Hour, Some("2026-01"), Some(&hours)),
            Some(own(&["2026-01"]))
        );
        // The weeks of a month reach outside it; the weeks of a year are read one by one.
        let weeks = own(&["2026-W01", "2026-W02"]);
        assert_eq!(
            top_cover(Period::Week, Some("2026-01"), Some(&weeks)),
            Some(weeks.clone())
        );
        assert_eq!(
            top_cover(Period::Week, Some("2026"), Some(&weeks)),
            Some(weeks)
        );
        let months = top_cover(Period::Day, Some("2026"), Some(&days)).unwrap();
        assert_eq!(months.len(), 12);
        assert_eq!(
            (months[0].as_str(), months[11].as_str()),
            ("2026-01", "2026-12")
        );
        assert_eq!(top_cover(Period::Day, None, None), None);
        assert_eq!(top_cover(Period::Day, None, Some(&days)), Some(days));
    }
}
