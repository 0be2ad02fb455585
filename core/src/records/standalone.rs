//! Tally's own s3db.js-compatible database: resources and their schemas, and records with
//! insert, get, update, delete and listing, every write a compare-and-swap (see the module
//! docs of [`crate::records`] for deletion and re-creation).

use super::{CommitOutcome, InsertListener, RecordAccess, StoredRecord, put_document};
use crate::clock::{Clock, IdSource, SplitMix, SystemClock, base36};
use crate::error::{Error, ErrorCode, Result};
use crate::formats::{
    self, Document, ResourceDoc, decode_document, encode_document, encode_tombstone,
};
use crate::keys::{Layout, check_record_id, check_resource_name};
use crate::schema::Schema;
use crate::store::cas::RetryPolicy;
use crate::store::{PutMode, SharedStore, StoreError, Version, list_all};
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};

/// Tally's own database: resources and records on a store.
pub struct Database {
    store: SharedStore,
    layout: Layout,
    resources: RwLock<HashMap<String, Schema>>,
    listeners: RwLock<Vec<Weak<dyn InsertListener>>>,
    ids: Arc<dyn IdSource>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("prefix", &self.layout.prefix())
            .finish_non_exhaustive()
    }
}

/// Options of [`Resource::list`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ListOptions {
    /// At most this many records.
    pub limit: Option<usize>,
    /// Skip this many first.
    pub offset: usize,
}

impl Database {
    /// A database on `store` under `prefix`, with the system clock and random ids.
    pub fn new(store: SharedStore, prefix: &str) -> Arc<Database> {
        Self::with_sources(
            store,
            prefix,
            Arc::new(SystemClock),
            Arc::new(SplitMix::from_entropy()),
        )
    }

    /// A database whose deletion times come from `clock` and whose generated record ids come
    /// from `ids` (a fixed clock and seed make every stored byte reproducible).
    pub fn with_sources(
        store: SharedStore,
        prefix: &str,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
    ) -> Arc<Database> {
        Arc::new(Database {
            store,
            layout: Layout::new(prefix),
            resources: RwLock::new(HashMap::new()),
            listeners: RwLock::new(Vec::new()),
            ids,
            clock,
        })
    }

    /// The store.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// The key layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Registers a listener for inserts (held weakly).
    pub fn add_insert_listener(&self, listener: Weak<dyn InsertListener>) {
        self.listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    /// Creates a resource, or attaches to one whose definition is already stored (the given
    /// attributes replace the stored ones).
    pub async fn create_resource(
        self: &Arc<Self>,
        name: &str,
        attributes: &Value,
    ) -> Result<Resource> {
        check_resource_name(name)?;
        let schema = Schema::parse(name, attributes)?;
        let body = formats::encode(&ResourceDoc {
            name: name.to_string(),
            attributes: attributes.clone(),
        })?;
        self.store
            .put(&self.layout.schema(name), body, PutMode::Overwrite)
            .await?;
        self.resources
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), schema);
        Ok(Resource {
            db: self.clone(),
            name: name.to_string(),
        })
    }

    /// A handle on an existing resource (defined in this process or stored).
    pub async fn resource(self: &Arc<Self>, name: &str) -> Result<Resource> {
        if self.schema_of(name).await?.is_none() {
            return Err(Error::new(
                ErrorCode::UnknownResource,
                format!("resource \"{name}\" does not exist"),
            ));
        }
        Ok(Resource {
            db: self.clone(),
            name: name.to_string(),
        })
    }

    /// Names of every stored resource.
    pub async fn resource_names(&self) -> Result<Vec<String>> {
        let prefix = self.layout.schemas();
        Ok(list_all(self.store.as_ref(), &prefix)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect())
    }

    async fn schema_of(&self, name: &str) -> Result<Option<Schema>> {
        if check_resource_name(name).is_err() {
            return Ok(None);
        }
        if let Some(s) = self
            .resources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(Some(s.clone()));
        }
        let Some(obj) = self.store.get(&self.layout.schema(name)).await? else {
            return Ok(None);
        };
        let def: ResourceDoc =
            formats::decode("resource definition", &self.layout.schema(name), &obj.bytes)?;
        let schema = Schema::parse(name, &def.attributes)?;
        self.resources
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), schema.clone());
        Ok(Some(schema))
    }

    /// The document at a record's key (a live record, or the tombstone of a deleted one) with
    /// its version.
    async fn read_document(&self, resource: &str, id: &str) -> Result<Option<(Document, Version)>> {
        let Some(obj) = self.store.get(&self.layout.record(resource, id)).await? else {
            return Ok(None);
        };
        Ok(Some((
            decode_document(&obj.bytes, resource, id)?,
            obj.version,
        )))
    }

    async fn read(&self, resource: &str, id: &str) -> Result<Option<StoredRecord>> {
        Ok(match self.read_document(resource, id).await? {
            Some((doc, version)) if !doc.deleted => Some(StoredRecord {
                data: doc.data,
                meta: doc.meta,
                version,
                owned: Vec::new(),
            }),
            _ => None,
        })
    }

    fn encode(data: &Map<String, Value>, meta: &Map<String, Value>) -> Result<Vec<u8>> {
        encode_document(data, meta)
    }

    fn new_id(&self) -> String {
        format!(
            "{}{}",
            base36(self.ids.next_u64(), 11),
            base36(self.ids.next_u64(), 11)
        )
    }
}

#[async_trait]
impl RecordAccess for Database {
    async fn load(&self, resource: &str, id: &str) -> Result<Option<StoredRecord>> {
        self.read(resource, id).await
    }

    async fn commit(
        &self,
        resource: &str,
        id: &str,
        data: Map<String, Value>,
        meta: Map<String, Value>,
        version: &Version,
        _paths: &[String],
    ) -> Result<CommitOutcome> {
        let body = Self::encode(&data, &meta)?;
        let mode = PutMode::Update(version.clone());
        put_document(&self.store, &self.layout.record(resource, id), body, mode).await
    }

    async fn schema(&self, resource: &str) -> Result<Option<Schema>> {
        self.schema_of(resource).await
    }

    async fn bookkeeping(&self, resource: &str, id: &str) -> Result<Option<Map<String, Value>>> {
        Ok(self
            .read_document(resource, id)
            .await?
            .map(|(doc, _)| doc.meta))
    }
}

/// A resource of the standalone database.
#[derive(Clone)]
pub struct Resource {
    db: Arc<Database>,
    name: String,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn not_found(resource: &str, id: &str) -> Error {
    Error::new(
        ErrorCode::RecordNotFound,
        format!("record \"{id}\" not found in resource \"{resource}\""),
    )
}

fn as_object(v: &Value, what: &str) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m.clone()),
        other => Err(Error::invalid_argument(format!(
            "{what} must be an object (got {other})"
        ))),
    }
}

fn with_id(mut data: Map<String, Value>, id: &str) -> Value {
    data.insert("id".into(), Value::String(id.to_string()));
    Value::Object(data)
}

impl Resource {
    /// The resource's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn schema(&self) -> Result<Schema> {
        self.db.schema_of(&self.name).await?.ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownResource,
                format!("resource \"{}\" does not exist", self.name),
            )
        })
    }

    /// Inserts a record (its `id` given or generated), then lets listeners apply pending
    /// transactions for it before returning the stored record.
    pub async fn insert(&self, data: &Value) -> Result<Value> {
        let mut data = as_object(data, "record")?;
        let id = match data.remove("id") {
            None | Some(Value::Null) => self.db.new_id(),
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(Error::invalid_argument(format!(
                    "record id must be a string (got {other})"
                )));
            }
        };
        check_record_id(&id)?;
        self.schema().await?.validate(&self.name, &mut data)?;
        self.write_new(&id, &data).await?;
        let listeners: Vec<_> = self
            .db
            .listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for l in listeners {
            l.record_inserted(&self.name, &id).await?;
        }
        self.get(&id).await
    }

    /// Writes a new record `id` (create-only, or over its tombstone, whose bookkeeping it
    /// keeps); `ERR_CONFLICT` when a live record has the id.
    async fn write_new(&self, id: &str, data: &Map<String, Value>) -> Result<()> {
        let db = &self.db;
        let key = db.layout.record(&self.name, id);
        let mut mode = PutMode::Create;
        let mut meta = Map::new();
        let policy = RetryPolicy::UntilDone;
        for _ in policy.attempts() {
            let body = Database::encode(data, &meta)?;
            match db.store.put(&key, body, mode.clone()).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => {
                    match db.read_document(&self.name, id).await? {
                        // A deleted record: the new one keeps its bookkeeping (see the module docs).
                        Some((doc, version)) if doc.deleted => {
                            meta = doc.meta;
                            mode = PutMode::Update(version);
                        }
                        Some(_) => {
                            return Err(Error::new(
                                ErrorCode::Conflict,
                                format!(
                                    "record \"{id}\" already exists in resource \"{}\"",
                                    self.name
                                ),
                            ));
                        }
                        None => (meta, mode) = (Map::new(), PutMode::Create),
                    }
                }
                Err(StoreError::NotFound { .. }) => (meta, mode) = (Map::new(), PutMode::Create),
                Err(e) => return Err(e.into()),
            }
        }
        Err(policy.exhausted(&format!("record \"{id}\" of \"{}\"", self.name)))
    }

    /// Reads a record; `ERR_RECORD_NOT_FOUND` when missing.
    pub async fn get(&self, id: &str) -> Result<Value> {
        check_record_id(id)?;
        match self.db.read(&self.name, id).await? {
            Some(r) => Ok(with_id(r.data, id)),
            None => Err(not_found(&self.name, id)),
        }
    }

    /// True when the record exists.
    pub async fn exists(&self, id: &str) -> Result<bool> {
        check_record_id(id)?;
        Ok(self.db.read(&self.name, id).await?.is_some())
    }

    /// Merges `changes` into the record's top-level attributes (s3db's `update`), validating
    /// the result; concurrent consolidations are never overwritten (compare-and-swap).
    pub async fn update(&self, id: &str, changes: &Value) -> Result<Value> {
        check_record_id(id)?;
        let mut changes = as_object(changes, "changes")?;
        changes.remove("id");
        let schema = self.schema().await?;
        let policy = RetryPolicy::UntilDone;
        for _ in policy.attempts() {
            let Some(cur) = self.db.read(&self.name, id).await? else {
                return Err(not_found(&self.name, id));
            };
            let mut data = cur.data.clone();
            for (k, v) in &changes {
                data.insert(k.clone(), v.clone());
            }
            schema.validate(&self.name, &mut data)?;
            match self
                .db
                .commit(&self.name, id, data.clone(), cur.meta, &cur.version, &[])
                .await?
            {
                CommitOutcome::Committed => return Ok(with_id(data, id)),
                CommitOutcome::Missing => return Err(not_found(&self.name, id)),
                CommitOutcome::Conflict => continue,
            }
        }
        Err(policy.exhausted(&format!("record \"{id}\" of \"{}\"", self.name)))
    }

    /// Same as [`Resource::update`] (s3db's `patch` differs only in cost).
    pub async fn patch(&self, id: &str, changes: &Value) -> Result<Value> {
        self.update(id, changes).await
    }

    /// Deletes a record; `ERR_RECORD_NOT_FOUND` when missing. Its transactions stay (pending
    /// ones apply if the id is inserted again) and the record becomes a tombstone, so a new
    /// record of the same id starts afresh (see the module docs).
    pub async fn delete(&self, id: &str) -> Result<()> {
        check_record_id(id)?;
        let db = &self.db;
        let key = db.layout.record(&self.name, id);
        let mut marked = false;
        let policy = RetryPolicy::UntilDone;
        for _ in policy.attempts() {
            let Some((doc, version)) = db.read_document(&self.name, id).await? else {
                return Err(not_found(&self.name, id));
            };
            if doc.deleted {
                return Err(not_found(&self.name, id));
            }
            if !marked {
                // First the mark, so listings never show a tombstone as a record.
                let mark = db.layout.deleted(&self.name, id);
                db.store
                    .put(&mark, b"{}".to_vec(), PutMode::Overwrite)
                    .await?;
                marked = true;
            }
            let tombstone = encode_tombstone(&Map::new(), &doc.meta, db.clock.now_ms())?;
            match put_document(&db.store, &key, tombstone, PutMode::Update(version)).await? {
                CommitOutcome::Committed => return Ok(()),
                CommitOutcome::Conflict => continue,
                CommitOutcome::Missing => return Err(not_found(&self.name, id)),
            }
        }
        Err(policy.exhausted(&format!("record \"{id}\" of \"{}\"", self.name)))
    }

    /// Ids of every record, in key order.
    pub async fn list_ids(&self) -> Result<Vec<String>> {
        let ids = |prefix: String, keys: Vec<String>| -> Vec<String> {
            keys.into_iter()
                .filter_map(|k| k.strip_prefix(&prefix).and_then(crate::keys::id_of_segment))
                .collect()
        };
        let store = self.db.store.as_ref();
        let prefix = self.db.layout.records(&self.name);
        let marks = self.db.layout.deleted_ids(&self.name);
        let (all, deleted) = futures::try_join!(list_all(store, &prefix), list_all(store, &marks))?;
        let deleted: std::collections::HashSet<String> = ids(marks, deleted).into_iter().collect();
        let mut out = Vec::new();
        for id in ids(prefix, all) {
            // An id deleted once: its key holds a tombstone unless it was inserted again.
            if !deleted.contains(&id) || self.db.read(&self.name, &id).await?.is_some() {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Records in id order, paged by `offset`/`limit`.
    pub async fn list(&self, opts: ListOptions) -> Result<Vec<Value>> {
        let ids: Vec<String> = self
            .list_ids()
            .await?
            .into_iter()
            .skip(opts.offset)
            .take(opts.limit.unwrap_or(usize::MAX))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.db.read(&self.name, &id).await? {
                out.push(with_id(r.data, &id));
            }
        }
        Ok(out)
    }

    /// Number of records.
    pub async fn count(&self) -> Result<usize> {
        Ok(self.list_ids().await?.len())
    }

    /// The records that exist among `ids`, in the order asked.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for id in ids {
            check_record_id(id)?;
            if let Some(r) = self.db.read(&self.name, id).await? {
                out.push(with_id(r.data, id));
            }
        }
        Ok(out)
    }
}
