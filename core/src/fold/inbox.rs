//! The inbox side of a fold: writing, owning and dropping a batch's inbox entry, reading the
//! fold state and the packed objects, and telling committed entries from orphans.

use super::*;
use crate::store::cas;

impl<'a> Folder<'a> {
    /// Writes a batch's contribution to the inbox, before the commit that applies the batch.
    pub(crate) async fn write_inbox_entry(
        &self,
        resource: &str,
        field: &str,
        entry: &str,
        delta: &Delta,
    ) -> Result<()> {
        let key = format!(
            "{}{entry}",
            self.ports.layout.analytics_inbox(resource, field)
        );
        let body = formats::encode(&InboxDoc {
            delta: delta_to_json(delta),
        })?;
        match self
            .ports
            .store
            .put(&key, body.clone(), PutMode::Create)
            .await
        {
            Ok(_) => Ok(()),
            // The name is this batch's alone: a 412 means our own write landed (sent twice).
            Err(StoreError::Conflict { .. })
                if cas::holds(self.ports.store.as_ref(), &key, &body).await =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Marks an inbox entry as this engine's own until the guard is dropped: its scans then
    /// leave it to its owner (who knows whether it commits).
    pub(crate) fn own_entry(&self, resource: &str, field: &str, entry: &str) -> InFlight<'a> {
        let key = format!(
            "{}{entry}",
            self.ports.layout.analytics_inbox(resource, field)
        );
        let local = self.local;
        if let Ok(mut s) = local.in_flight.lock() {
            s.insert(key.clone());
        }
        InFlight { local, key }
    }

    /// Notes that this engine committed the batch of an entry, so its folds need not check it.
    pub(crate) fn entry_committed(
        &self,
        resource: &str,
        field: &str,
        entry: &str,
        delta: Arc<Delta>,
    ) {
        let key = format!(
            "{}{entry}",
            self.ports.layout.analytics_inbox(resource, field)
        );
        self.local.remember(key, delta);
    }

    /// Removes the entry of a batch that did not commit (best effort).
    pub(crate) async fn drop_inbox_entry(&self, resource: &str, field: &str, entry: &str) {
        let key = format!(
            "{}{entry}",
            self.ports.layout.analytics_inbox(resource, field)
        );
        let _ = self.ports.store.delete(&key).await;
    }

    pub(crate) async fn read_fold_state(&self, resource: &str, field: &str) -> Result<FoldState> {
        let key = self.ports.layout.analytics_fold(resource, field);
        let Some(obj) = self.ports.store.get(&key).await? else {
            return Ok(FoldState::default());
        };
        // The state this engine last read or wrote is parsed once.
        let local = self.local;
        let body = match local.state(&key, &obj.version) {
            Some(body) => body,
            None => {
                let body = Arc::new(FoldBody::decode(&key, &obj.bytes)?);
                local.keep_state(key, obj.version.clone(), body.clone());
                body
            }
        };
        Ok(FoldState {
            body,
            version: Some(obj.version),
        })
    }

    /// A fold state a listing can be compared with: the one this engine last read or wrote
    /// (a fold swaps on a fresh read anyway, and the listing holds while `trim` is the same),
    /// or a fresh read.
    pub(crate) async fn fold_state_to_list(
        &self,
        resource: &str,
        field: &str,
    ) -> Result<FoldState> {
        let key = self.ports.layout.analytics_fold(resource, field);
        let known = self.local.states.lock().ok().and_then(|states| {
            let (version, body) = states.get(&key)?;
            Some(FoldState {
                body: body.clone(),
                version: Some(version.clone()),
            })
        });
        match known {
            Some(state) => Ok(state),
            None => self.read_fold_state(resource, field).await,
        }
    }

    pub(crate) async fn read_packed(
        &self,
        resource: &str,
        field: &str,
        name: &str,
    ) -> Result<PackedObject> {
        let key = self.ports.layout.analytics_object(resource, field, name);
        let Some(obj) = self.ports.store.get(&key).await? else {
            return Ok(PackedObject {
                fold: 0,
                points: Packed::new(),
                version: None,
            });
        };
        let doc: PackedDoc =
            formats::decode("packed object", &key, &obj.bytes).map_err(|_| corrupt(&key))?;
        Ok(PackedObject {
            fold: doc.fold,
            points: packed_from_json(&doc.p).ok_or_else(|| corrupt(&key))?,
            version: Some(obj.version),
        })
    }

    /// Writes a packed object if it is still at the version read, and notes its new version;
    /// false on a conflict (then someone else has written it at least as far).
    pub(super) async fn write_packed(
        &self,
        resource: &str,
        field: &str,
        name: &str,
        obj: &mut PackedObject,
    ) -> Result<bool> {
        let key = self.ports.layout.analytics_object(resource, field, name);
        let body = formats::encode(&PackedDoc {
            fold: obj.fold,
            p: packed_to_json(&obj.points),
        })?;
        let mode = match &obj.version {
            Some(v) => PutMode::Update(v.clone()),
            None => PutMode::Create,
        };
        match self.ports.store.put(&key, body, mode).await {
            Ok(v) => {
                obj.version = Some(v);
                Ok(true)
            }
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the batch of a foreign inbox entry `<id>/<batch>` committed, from the record's
    /// bookkeeping (and its journal chain for batches older than the last 16).
    pub(super) async fn entry_status(
        &self,
        resource: &str,
        field: &str,
        entry: &str,
    ) -> Result<EntryStatus> {
        let Some((id, batch)) = entry.split_once('/') else {
            return Ok(EntryStatus::Orphan);
        };
        let Some(id) = crate::keys::id_of_segment(id) else {
            return Ok(EntryStatus::Orphan);
        };
        let id = id.as_str();
        let Some(seq) = batch_seq(batch) else {
            return Ok(EntryStatus::Orphan);
        };
        // A deleted record's tombstone still names its batches (see `crate::records`): a batch
        // committed before the deletion counts, one cut short by it does not. With no
        // bookkeeping at all, nothing is known yet.
        let Some(meta) = self.ports.records.bookkeeping(resource, id).await? else {
            return Ok(EntryStatus::Undecided);
        };
        let state = FieldState::of(&meta, field);
        if state.batch.as_deref() == Some(batch) || state.recent.iter().any(|b| b == batch) {
            return Ok(EntryStatus::Committed);
        }
        if state.seq < seq {
            return Ok(EntryStatus::Undecided);
        }
        if state.seq.saturating_sub(seq) <= RECENT_BATCHES as u64 {
            return Ok(EntryStatus::Orphan);
        }
        let (chain, _) = self.ports.journals().chain(resource, field, id).await?;
        if chain.iter().any(|j| j.key.ends_with(&format!("/{batch}"))) {
            Ok(EntryStatus::Committed)
        } else if chain.first().is_some_and(|j| j.seq <= seq) {
            Ok(EntryStatus::Orphan)
        } else {
            Ok(EntryStatus::Undecided)
        }
    }

    /// Whether a foreign entry committed and, if so, its contribution (`None` when it vanished
    /// meanwhile: someone else folded and deleted it).
    pub(super) async fn check_entry(
        &self,
        resource: &str,
        field: &str,
        name: String,
    ) -> Result<EntryCheck> {
        let key = format!(
            "{}{name}",
            self.ports.layout.analytics_inbox(resource, field)
        );
        let local = self.local;
        if let Some(delta) = local.cached(&key) {
            return Ok((name, EntryStatus::Committed, Some(delta)));
        }
        // An entry of this engine's own consolidation under way is left to it; one another
        // fold of this engine is checking is what that check finds.
        if local.is_in_flight(&key) {
            return Ok((name, EntryStatus::Undecided, None));
        }
        let _checking = match local.start_check(&key) {
            Ok(checking) => checking,
            Err(done) => {
                let _ = done.await;
                let delta = local.cached(&key);
                let status = match delta {
                    Some(_) => EntryStatus::Committed,
                    None => EntryStatus::Undecided,
                };
                return Ok((name, status, delta));
            }
        };
        // The status and the entry are read side by side (one round trip); an orphan's body
        // is not needed, but orphans are rare.
        let (status, obj) = futures::join!(
            self.entry_status(resource, field, &name),
            self.ports.store.get(&key)
        );
        let status = status?;
        if !matches!(status, EntryStatus::Committed) {
            return Ok((name, status, None));
        }
        let Some(obj) = obj? else {
            return Ok((name, status, None));
        };
        let doc: InboxDoc =
            formats::decode("inbox entry", &key, &obj.bytes).map_err(|_| corrupt(&key))?;
        let delta = Arc::new(delta_from_json(&doc.delta).ok_or_else(|| corrupt(&key))?);
        local.remember(key, delta.clone());
        Ok((name, status, Some(delta)))
    }

    /// Reads what a fold starts from: the fold state, then the inbox (in that order: a listed
    /// entry not in the state's `keys` was not folded as of that state), with every new entry
    /// other than `own` checked and read.
    pub(super) async fn scan_fold(
        &self,
        resource: &str,
        field: &str,
        own: Option<&str>,
    ) -> Result<FoldScan> {
        let state = self.read_fold_state(resource, field).await?;
        self.scan_inbox(resource, field, own, state).await
    }

    /// [`Folder::scan_fold`] from a state already read. A consolidation reads the state before
    /// its commit and scans the inbox alongside it.
    pub(crate) async fn scan_inbox(
        &self,
        resource: &str,
        field: &str,
        own: Option<&str>,
        state: FoldState,
    ) -> Result<FoldScan> {
        let inbox = self.ports.layout.analytics_inbox(resource, field);
        let listed: Vec<String> = list_all(self.ports.store.as_ref(), &inbox)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&inbox).map(str::to_string))
            .collect();
        let listed: BTreeSet<String> = listed.into_iter().collect();
        let gone = state.keys.difference(&listed).cloned().collect();
        let (resurrected, new): (Vec<String>, Vec<String>) = listed
            .into_iter()
            .filter(|n| !state.keys.contains(n))
            .partition(|n| state.folded_already(n));
        let own_listed = own.is_some_and(|o| new.iter().any(|n| n == o));
        Ok(FoldScan {
            state,
            gone,
            foreign: Vec::new(),
            orphans: resurrected.iter().map(|n| format!("{inbox}{n}")).collect(),
            pending: new
                .into_iter()
                .filter(|n| Some(n.as_str()) != own)
                .collect(),
            own_listed,
        })
    }

    /// Read only: the fold state, then the inbox, with each entry it did not fold checked.
    /// Returns the state, the committed entries not folded in it (with their contribution)
    /// and the names of the entries whose batch is not known to be committed yet.
    pub(crate) async fn scan_committed(
        &self,
        resource: &str,
        field: &str,
    ) -> Result<(FoldState, Vec<(String, Arc<Delta>)>, Vec<String>)> {
        let inbox = self.ports.layout.analytics_inbox(resource, field);
        let mut scan = self.scan_fold(resource, field, None).await?;
        let names = std::mem::take(&mut scan.pending);
        let checked = self.check_entries(resource, field, names).await;
        scan.sort(&inbox, checked)?;
        Ok((scan.state, scan.foreign, scan.pending))
    }

    /// Checks foreign entries in parallel.
    pub(super) async fn check_entries(
        &self,
        resource: &str,
        field: &str,
        names: Vec<String>,
    ) -> Vec<Result<EntryCheck>> {
        futures::stream::iter(names)
            .map(|name| self.check_entry(resource, field, name))
            .buffered(32)
            .collect()
            .await
    }
}
