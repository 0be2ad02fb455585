//! Dead letters: pending transactions that can never be applied as they are (a sum that
//! overflows the exact decimal range, a reducer that throws or returns a non-number), set
//! aside so that the record's later transactions still apply.
//!
//! Consolidation folds a batch; when the fold fails on a transaction's own account
//! ([`crate::txn::is_poison`]), it folds the batch again one transaction at a time and sets aside each
//! one that fails alone. The batch commits as usual, with those keys among the keys it
//! consumed (so a late copy of one is stale) and named in the bookkeeping (`dead`) and the
//! journal (`deadLetters`). After the commit, and before the keys are deleted, each is
//! written to `P/d/<resource>/<field>/<id>/<name>` with the error; a consolidation that
//! finds the keys of the last batch still pending writes what is missing first. Each one is
//! reported by a `consolidation-error` event naming the transaction.
//!
//! [`DeadLetters::retry_dead_letter`] writes the transaction again as a new pending key with an
//! idempotency key derived from the dead letter's name (a retry repeated after a crash is
//! answered by the first one's marker rather than applied twice), then removes the dead
//! letter; [`DeadLetters::discard_dead_letter`] removes it.

use crate::config::PluginConfig;
use crate::consolidate::Consolidator;
use crate::error::{Error, ErrorCode, Result};
use crate::formats::{self, DeadLetterDoc};
use crate::keys::check_record_id;
use crate::ports::Ports;
use crate::resolve::{Target, resolve};
use crate::store::{PutMode, StoreError, list_all};
use serde_json::Value;

/// How many dead letters a field holds (one LIST per 1,000).
pub(crate) async fn count(ports: &Ports, resource: &str, field: &str) -> Result<usize> {
    let prefix = ports.layout.dead_letters(resource, field);
    Ok(list_all(ports.store.as_ref(), &prefix).await?.len())
}

/// Lists, retries and discards the dead letters of a field.
#[derive(Clone, Copy)]
pub(crate) struct DeadLetters<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// The plugin configuration.
    pub(crate) config: &'a PluginConfig,
    /// The exactly-once consolidation (and the pending reads).
    pub(crate) consolidator: Consolidator<'a>,
}

impl<'a> DeadLetters<'a> {
    /// The configured field `resource.field` names.
    async fn target(&self, resource: &str, field: &str) -> Result<Target> {
        resolve(
            self.config,
            self.ports.records.as_ref(),
            resource,
            Some(field),
        )
        .await
    }

    /// The dead letters of a field: `[{ recordId, name, transaction, error: {code, message},
    /// at }]`, in key order.
    pub(crate) async fn dead_letters(&self, resource: &str, field: &str) -> Result<Vec<Value>> {
        let target = self.target(resource, field).await?;
        let prefix = self
            .ports
            .layout
            .dead_letters(resource, &target.field.field);
        let mut out = Vec::new();
        for key in list_all(self.ports.store.as_ref(), &prefix).await? {
            let Some(obj) = self.ports.store.get(&key).await? else {
                continue;
            };
            let doc: DeadLetterDoc = formats::decode("dead letter", &key, &obj.bytes)?;
            out.push(self.dead_letter_json(doc)?);
        }
        Ok(out)
    }

    async fn dead_letter(
        &self,
        resource: &str,
        field: &str,
        id: &str,
        name: &str,
    ) -> Result<(String, Vec<u8>)> {
        check_record_id(id)?;
        let target = self.target(resource, field).await?;
        if name.is_empty() || name.contains('/') {
            return Err(Error::invalid_argument(format!(
                "\"{}\" is not a dead letter name",
                crate::amount::truncate(name, 60)
            )));
        }
        let key = format!(
            "{}{}/{name}",
            self.ports
                .layout
                .dead_letters(resource, &target.field.field),
            crate::keys::id_segment(id)
        );
        let obj = self.ports.store.get(&key).await?.ok_or_else(|| {
            Error::new(
                ErrorCode::RecordNotFound,
                format!("no dead letter \"{name}\" for record \"{id}\" of \"{resource}.{field}\""),
            )
        })?;
        Ok((key, obj.bytes))
    }

    /// A dead letter as users see it: as stored, its transaction as the API shows one.
    fn dead_letter_json(&self, doc: DeadLetterDoc) -> Result<Value> {
        let transaction = doc.transaction.to_json(self.config.timezone, false);
        let mut v = serde_json::to_value(&doc).map_err(|e| Error::storage(e.to_string()))?;
        v["transaction"] = transaction;
        Ok(v)
    }

    /// Puts a dead letter back as a pending transaction (to be applied by the next
    /// consolidation, or now in sync mode), then removes it; returns the transaction.
    pub(crate) async fn retry_dead_letter(
        &self,
        resource: &str,
        field: &str,
        id: &str,
        name: &str,
    ) -> Result<Value> {
        let (key, bytes) = self.dead_letter(resource, field, id, name).await?;
        let doc: DeadLetterDoc = formats::decode("dead letter", &key, &bytes)?;
        let mut tx = doc.transaction;
        // A new id, derived from the old name.
        let suffix = crate::keys::short_hash(&["retry", name], 16);
        tx.id = format!("tx-{}-{suffix}", tx.timestamp_ms);
        // An idempotency key derived from the dead letter: a retry repeated after a crash, even
        // much later, is recognised by its applied marker rather than applied again.
        tx.idempotency_key = Some(format!(
            "{}#dead-letter-retry-{suffix}",
            tx.idempotency_key.as_deref().unwrap_or("")
        ));
        let target = self.target(resource, field).await?;
        let pending = format!(
            "{}{}",
            self.ports.layout.pending(resource, &target.field.field, id),
            tx.key_name()
        );
        let body = serde_json::to_vec(&tx).map_err(|e| Error::storage(e.to_string()))?;
        match self.ports.store.put(&pending, body, PutMode::Create).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.ports.store.delete(&key).await?;
        if self.config.mode == crate::config::Mode::Sync {
            self.consolidator
                .consolidate_record(resource, &target.field, id)
                .await?;
        }
        Ok(tx.to_json(self.config.timezone, false))
    }

    /// Removes a dead letter for good (its transaction is never applied).
    pub(crate) async fn discard_dead_letter(
        &self,
        resource: &str,
        field: &str,
        id: &str,
        name: &str,
    ) -> Result<()> {
        let (key, _) = self.dead_letter(resource, field, id, name).await?;
        self.ports.store.delete(&key).await?;
        Ok(())
    }
}
