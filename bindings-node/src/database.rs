//! `NativeDatabase`: Tally's standalone s3db.js-compatible database (resources and records)
//! over a connection string.

use crate::convert::{Code, Coded, IntoNapi, Settled, settle};
use napi_derive::napi;
use serde_json::Value;
use std::sync::Arc;
use tally_core::records::{ListOptions, Resource};
use tally_core::{Database, connection};

/// A database handle shared with the plugins installed on it.
#[napi]
pub struct NativeDatabase {
    pub(crate) db: Arc<Database>,
}

#[napi]
impl NativeDatabase {
    /// Opens the store a connection string names (synchronous: nothing is read yet).
    #[napi(constructor)]
    pub fn new(connection_string: String) -> napi::Result<Self, Code> {
        let c = connection::open(&connection_string).napi()?;
        Ok(NativeDatabase {
            db: Database::new(c.store, &c.prefix),
        })
    }

    async fn resource(&self, name: &str) -> Coded<Resource> {
        self.db.resource(name).await.napi()
    }

    /// Creates a resource, or attaches to a stored one of the same name.
    #[napi]
    pub async fn create_resource(&self, name: String, attributes: Value) -> Settled<()> {
        settle(async {
            self.db
                .create_resource(&name, &attributes)
                .await
                .napi()
                .map(|_| ())
        })
        .await
    }

    /// Names of the stored resources.
    #[napi]
    pub async fn resource_names(&self) -> Settled<Vec<String>> {
        settle(async { self.db.resource_names().await.napi() }).await
    }

    /// Inserts a record (applies its pending transactions for installed plugins).
    #[napi]
    pub async fn insert(&self, resource: String, data: Value) -> Settled<Value> {
        settle(async { self.resource(&resource).await?.insert(&data).await.napi() }).await
    }

    /// Reads a record.
    #[napi]
    pub async fn get(&self, resource: String, id: String) -> Settled<Value> {
        settle(async { self.resource(&resource).await?.get(&id).await.napi() }).await
    }

    /// True when the record exists.
    #[napi]
    pub async fn exists(&self, resource: String, id: String) -> Settled<bool> {
        settle(async { self.resource(&resource).await?.exists(&id).await.napi() }).await
    }

    /// Replaces the given attributes of a record.
    #[napi]
    pub async fn update(&self, resource: String, id: String, data: Value) -> Settled<Value> {
        settle(async {
            self.resource(&resource)
                .await?
                .update(&id, &data)
                .await
                .napi()
        })
        .await
    }

    /// Merges attributes into a record.
    #[napi]
    pub async fn patch(&self, resource: String, id: String, data: Value) -> Settled<Value> {
        settle(async {
            self.resource(&resource)
                .await?
                .patch(&id, &data)
                .await
                .napi()
        })
        .await
    }

    /// Deletes a record.
    #[napi]
    pub async fn delete(&self, resource: String, id: String) -> Settled<()> {
        settle(async { self.resource(&resource).await?.delete(&id).await.napi() }).await
    }

    /// Lists records (`limit`, `offset`).
    #[napi]
    pub async fn list(
        &self,
        resource: String,
        limit: Option<u32>,
        offset: Option<u32>,
    ) -> Settled<Vec<Value>> {
        settle(async {
            let opts = ListOptions {
                limit: limit.map(|l| l as usize),
                offset: offset.unwrap_or(0) as usize,
            };
            self.resource(&resource).await?.list(opts).await.napi()
        })
        .await
    }

    /// Number of records.
    #[napi]
    pub async fn count(&self, resource: String) -> Settled<u32> {
        settle(async {
            let n = self.resource(&resource).await?.count().await.napi()?;
            Ok(n as u32)
        })
        .await
    }

    /// Reads several records (missing ones are skipped).
    #[napi]
    pub async fn get_many(&self, resource: String, ids: Vec<String>) -> Settled<Vec<Value>> {
        settle(async { self.resource(&resource).await?.get_many(&ids).await.napi() }).await
    }
}
