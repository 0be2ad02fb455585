//! The host database's records reached from Rust: `JsHost` calls the JS adapter's async
//! `get(resource, id)` and `write(resource, id, changes)` (which use s3db.js's resource API).

use async_trait::async_trait;
use napi::Status;
use napi::bindgen_prelude::Promise;
use napi::threadsafe_function::ThreadsafeFunction;
use serde_json::{Map, Value, json};
use tally_core::records::s3db::Host;
use tally_core::{Error, Result};

/// An async JS function of one JSON argument; weak, so it never keeps Node alive.
pub type HostFn = ThreadsafeFunction<Value, Promise<Value>, Value, Status, false, true>;

/// The JS adapter's record functions.
pub struct JsHost {
    pub get: HostFn,
    pub write: HostFn,
}

async fn call(f: &HostFn, what: &str, arg: Value) -> Result<Value> {
    // The host's message may quote its connection string: never pass a secret on.
    let failed = |e: napi::Error| {
        Error::storage(format!(
            "host database {what} failed: {}",
            tally_core::connection::redact_urls(&e.reason)
        ))
    };
    f.call_async_catch(arg)
        .await
        .map_err(failed)?
        .await
        .map_err(failed)
}

#[async_trait]
impl Host for JsHost {
    async fn get(&self, resource: &str, id: &str) -> Result<Option<Map<String, Value>>> {
        match call(&self.get, "read", json!({ "resource": resource, "id": id })).await? {
            Value::Object(m) => Ok(Some(m)),
            _ => Ok(None),
        }
    }

    async fn write(&self, resource: &str, id: &str, changes: Map<String, Value>) -> Result<bool> {
        let out = call(
            &self.write,
            "write",
            json!({ "resource": resource, "id": id, "changes": changes }),
        )
        .await?;
        // The host database's own validation refused the values (`{ rejected: message }`).
        if let Some(why) = out.get("rejected").and_then(Value::as_str) {
            return Err(Error::new(
                tally_core::ErrorCode::Validation,
                format!(
                    "s3db.js refused the consolidated values of {resource} \"{id}\": {}",
                    tally_core::connection::redact_urls(why)
                ),
            ));
        }
        Ok(out.as_bool().unwrap_or(false))
    }
}
