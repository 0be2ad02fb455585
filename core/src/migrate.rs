//! Carrying over s3db.js 21.6.2's pending transactions (`plg_<resource>_tx_<field>`), exactly
//! once whoever does it and however often: each keeps its timestamp, and its old id is the
//! idempotency key, so a second carrier (another process, a restart) changes nothing.

use crate::engine::{Engine, Written};
use crate::error::{Error, Result};
use crate::keys::check_record_id;
use crate::txn::{Op, Transaction};
use rust_decimal::Decimal;
use serde_json::Value;

impl Engine {
    /// Carries over one transaction written elsewhere (s3db.js 21.6.2's transaction
    /// resources) with its own timestamp, exactly once per `key`: returns false when a
    /// transaction with that key was already carried over (pending or applied).
    #[allow(clippy::too_many_arguments)]
    pub async fn import_transaction(
        &self,
        resource: &str,
        path: &str,
        id: &str,
        op: Op,
        value: Decimal,
        timestamp_ms: i64,
        source: Option<String>,
        key: &str,
    ) -> Result<bool> {
        check_record_id(id)?;
        let target = self.resolve(resource, Some(path)).await?;
        // The old id's random part orders transactions of one millisecond as before.
        let suffix = match key.rsplit('-').next() {
            Some(r)
                if !r.is_empty()
                    && r.len() <= 12
                    && r.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                r.to_ascii_lowercase()
            }
            _ => crate::keys::short_hash(&[key], 9),
        };
        let tx = Transaction {
            id: format!("tx-{timestamp_ms}-{suffix}"),
            original_id: id.to_string(),
            field: target.field.field.clone(),
            field_path: target.path.clone(),
            value,
            operation: op,
            timestamp_ms,
            order_ms: None,
            source,
            idempotency_key: Some(key.to_string()),
            metadata: None,
        };
        Ok(matches!(
            self.write_transaction(&target, id, tx).await?,
            Written::Stored(_)
        ))
    }

    /// Carries over one 21.6.2 transaction object (`{ id, originalId, field, fieldPath,
    /// operation, value, timestamp, source }`, as its resource API returns it).
    pub async fn carry_over(&self, resource: &str, tx: &Value) -> Result<bool> {
        let bad = |what: &str| {
            Error::invalid_argument(format!(
                "21.6.2 transaction {} of \"{resource}\" has no usable {what}",
                crate::amount::truncate(&tx["id"].to_string(), 60)
            ))
        };
        let op = tx["operation"]
            .as_str()
            .and_then(Op::parse)
            .ok_or_else(|| bad("operation"))?;
        let value = tx["value"].as_f64().ok_or_else(|| bad("value"))?;
        let value = crate::amount::decimal_from_f64(value).map_err(|_| bad("value"))?;
        let ts = tx["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| bad("timestamp"))?;
        let id = tx["originalId"].as_str().ok_or_else(|| bad("originalId"))?;
        let key = tx["id"].as_str().ok_or_else(|| bad("id"))?;
        let path = tx["fieldPath"]
            .as_str()
            .filter(|p| !p.is_empty())
            .or(tx["field"].as_str())
            .ok_or_else(|| bad("field"))?;
        let source = tx["source"].as_str().map(str::to_string);
        self.import_transaction(resource, path, id, op, value, ts, source, key)
            .await
    }
}
