//! The storage layout: which key holds what, name rules for ids, resources and fields, and the
//! encoding of a transaction into its key name (so one LIST sees every pending transaction).
//!
//! Under a database prefix `P`:
//!
//! | key | holds |
//! | --- | --- |
//! | `P/s/<resource>` | resource definition (attributes) |
//! | `P/r/<resource>/<id>` | a record: `{"d": data, "m": tally bookkeeping}` |
//! | `P/t/<resource>/<field>/<id>/<name>` | a pending transaction; `<name>` encodes it |
//! | `P/j/<resource>/<field>/<id>/<seq>-<hash>` | a journal: one consolidation's applied batch |
//! | `P/c/<resource>/<field>/<id>/<label>` | a checkpoint: the value at an hour/day boundary |
//! | `P/i/<resource>/<field>/<id>/<hash>` | an applied idempotency key |
//! | `P/l/<resource>/<field>` | the background-pass lease |

use crate::error::{Error, ErrorCode, Result};

/// Longest record id accepted, in bytes of UTF-8.
pub const MAX_ID_LEN: usize = 128;
/// Longest `source` string accepted.
pub const MAX_SOURCE_LEN: usize = 64;
/// Longest field path accepted.
pub const MAX_PATH_LEN: usize = 128;

/// Longest key segment (a file name on the folder store) any store holds.
pub const MAX_SEGMENT_LEN: usize = 255;

/// The length of a key segment on the strictest store, the folder store, which writes each
/// ASCII capital and `^` as two bytes (see [`crate::store::fs`]).
pub fn stored_segment_len(segment: &str) -> usize {
    segment.len().saturating_add(
        segment
            .bytes()
            .filter(|b| b.is_ascii_uppercase() || *b == b'^')
            .count(),
    )
}

/// Checks a record id: any non-empty string of at most 128 bytes of UTF-8, as s3db.js allows
/// (unicode, spaces, `.hidden`, `Alice` and `alice` as two records), whose key segment fits
/// [`MAX_SEGMENT_LEN`] on every store. In keys an id is written through [`id_segment`], so it
/// can never name a key outside its prefix or folder.
pub fn check_record_id(id: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid_argument(format!(
            "record id \"{}\" is invalid: {why}",
            crate::amount::truncate(id, 60)
        )))
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("it is longer than 128 bytes");
    }
    if stored_segment_len(&id_segment(id)) > MAX_SEGMENT_LEN {
        return bad(
            "it is longer than 255 bytes once encoded for storage (each byte outside letters, digits and _-.:@+=~ takes three, a capital among them four)",
        );
    }
    Ok(())
}

/// Bytes an id keeps as they are in a key segment; every other byte (and a leading `.`) is
/// percent-encoded. Ids made only of these were written unchanged by earlier versions.
fn id_byte_is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-.:@+=~".contains(&b)
}

/// The key segment of a record id: the id itself when it is plain (see above), otherwise
/// percent-encoded, so no id holds a `/`, starts with `.`, or is `.`/`..` in a key.
pub fn id_segment(id: &str) -> std::borrow::Cow<'_, str> {
    if id.bytes().all(id_byte_is_plain) && !id.starts_with('.') {
        return std::borrow::Cow::Borrowed(id);
    }
    let mut out = String::with_capacity(id.len().saturating_mul(3));
    for (i, b) in id.bytes().enumerate() {
        if id_byte_is_plain(b) && !(i == 0 && b == b'.') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The record id of a key segment written by [`id_segment`].
pub fn id_of_segment(segment: &str) -> Option<String> {
    decode_component(segment)
}

/// Checks a resource name: 1–64 characters, a letter or `_` first, then letters, digits, `_`, `-`.
pub fn check_resource_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "resource name \"{}\" is invalid: use 1-64 letters, digits, _ or -, starting with a letter",
            crate::amount::truncate(name, 60)
        )))
    }
}

/// Checks a field path: dot-separated identifiers (`[A-Za-z_$][A-Za-z0-9_$]*`), at most 128
/// characters.
pub fn check_field_path(path: &str, code: ErrorCode) -> Result<()> {
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
    };
    if path.is_empty() {
        return Err(Error::new(code, "field name is empty"));
    }
    if path.len() > MAX_PATH_LEN || !path.split('.').all(ident) {
        return Err(Error::new(
            code,
            format!(
                "field \"{}\" is invalid: use dot-separated names of letters, digits, _ or $",
                crate::amount::truncate(path, 60)
            ),
        ));
    }
    Ok(())
}

/// Key builder for one database prefix.
#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// A layout under `prefix` (may be empty).
    pub fn new(prefix: &str) -> Self {
        let p = prefix.trim_matches('/');
        Layout {
            prefix: if p.is_empty() {
                String::new()
            } else {
                format!("{p}/")
            },
        }
    }
    /// The prefix, with a trailing `/` unless empty.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Where a resource's definition lives.
    pub fn schema(&self, resource: &str) -> String {
        format!("{}s/{resource}", self.prefix)
    }
    /// Prefix of all resource definitions.
    pub fn schemas(&self) -> String {
        format!("{}s/", self.prefix)
    }
    /// A record.
    pub fn record(&self, resource: &str, id: &str) -> String {
        format!("{}r/{resource}/{}", self.prefix, id_segment(id))
    }
    /// The mark of an id that was deleted once (see [`crate::records`]): its record's key may
    /// hold a tombstone.
    pub fn deleted(&self, resource: &str, id: &str) -> String {
        format!("{}x/{resource}/{}", self.prefix, id_segment(id))
    }
    /// Prefix of the marks of a resource's deleted ids.
    pub fn deleted_ids(&self, resource: &str) -> String {
        format!("{}x/{resource}/", self.prefix)
    }
    /// Prefix of a resource's records.
    pub fn records(&self, resource: &str) -> String {
        format!("{}r/{resource}/", self.prefix)
    }
    /// Prefix of every pending transaction of a field.
    pub fn pending_field(&self, resource: &str, field: &str) -> String {
        format!("{}t/{resource}/{field}/", self.prefix)
    }
    /// Prefix of one record's pending transactions of a field.
    pub fn pending(&self, resource: &str, field: &str, id: &str) -> String {
        format!("{}t/{resource}/{field}/{}/", self.prefix, id_segment(id))
    }
    /// Prefix of one record's journals of a field.
    pub fn journals(&self, resource: &str, field: &str, id: &str) -> String {
        format!("{}j/{resource}/{field}/{}/", self.prefix, id_segment(id))
    }
    /// Prefix of every journal of a field.
    pub fn journals_field(&self, resource: &str, field: &str) -> String {
        format!("{}j/{resource}/{field}/", self.prefix)
    }
    /// Prefix of one record's checkpoints of a field.
    pub fn checkpoints(&self, resource: &str, field: &str, id: &str) -> String {
        format!("{}c/{resource}/{field}/{}/", self.prefix, id_segment(id))
    }
    /// Prefix of every checkpoint of a field.
    pub fn checkpoints_field(&self, resource: &str, field: &str) -> String {
        format!("{}c/{resource}/{field}/", self.prefix)
    }
    /// An applied idempotency key.
    pub fn idempotency(&self, resource: &str, field: &str, id: &str, hash: &str) -> String {
        format!(
            "{}i/{resource}/{field}/{}/{hash}",
            self.prefix,
            id_segment(id)
        )
    }
    /// Prefix of every idempotency marker of a field.
    pub fn idempotency_field(&self, resource: &str, field: &str) -> String {
        format!("{}i/{resource}/{field}/", self.prefix)
    }
    /// Prefix of a field's analytics inbox: one entry `<id>/<batch>` per batch not yet folded.
    pub fn analytics_inbox(&self, resource: &str, field: &str) -> String {
        format!("{}a/{resource}/{field}/in/", self.prefix)
    }
    /// A field's analytics fold state.
    pub fn analytics_fold(&self, resource: &str, field: &str) -> String {
        format!("{}a/{resource}/{field}/fold", self.prefix)
    }
    /// A packed analytics object of a field (`h/YYYY-MM`, `y/YYYY`, `t/<label>`, or a prefix
    /// of those).
    pub fn analytics_object(&self, resource: &str, field: &str, name: &str) -> String {
        format!("{}a/{resource}/{field}/{name}", self.prefix)
    }
    /// Prefix of every dead letter of a field: `<id>/<name>`, a transaction set aside.
    pub fn dead_letters(&self, resource: &str, field: &str) -> String {
        format!("{}d/{resource}/{field}/", self.prefix)
    }
    /// The background-pass lease of a field.
    pub fn lease(&self, resource: &str, field: &str) -> String {
        format!("{}l/{resource}/{field}", self.prefix)
    }
}

/// Splits `<prefix><id>/<name>` (a key under a field's pending or journal prefix) into the
/// record id (decoded from its [`id_segment`]) and the last segment.
pub fn split_record_key<'a>(field_prefix: &str, key: &'a str) -> Option<(String, &'a str)> {
    let rest = key.strip_prefix(field_prefix)?;
    let (id, name) = rest.split_once('/')?;
    Some((id_of_segment(id)?, name))
}

/// Percent-encodes everything outside `A–Z a–z 0–9 _ . -`.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`encode_component`].
pub fn decode_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i.checked_add(1)?..i.checked_add(3)?)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i = i.saturating_add(3);
        } else {
            out.push(bytes[i]);
            i = i.saturating_add(1);
        }
    }
    String::from_utf8(out).ok()
}

/// Hex of the first `n` bytes of the SHA-256 of `parts` joined by NUL.
pub fn short_hash(parts: &[&str], n: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    h.finalize()[..n]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Hex SHA-256 of `bytes`: a journal's link in its record's hash chain.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The name of a batch committed at `at`: `<seq:010>-<time, 9 base-36 digits>-<nonce>`
/// (GC tells a journal's age from a listing).
pub(crate) fn batch_name(seq: u64, at: i64, nonce: &str) -> String {
    format!("{}-{nonce}", checkpoint_name(seq, at))
}

/// The name of the checkpoint after batch `seq`, committed at `at`.
pub(crate) fn checkpoint_name(seq: u64, at: i64) -> String {
    format!(
        "{seq:010}-{}",
        crate::clock::base36(u64::try_from(at).unwrap_or(0), 9)
    )
}

/// The batch number and, when the name carries it, the commit time of a batch name
/// (`<seq>-<time>-<nonce>`, or `<seq>-<nonce>` from earlier versions) or a checkpoint name
/// (`<seq>-<time>`, or `<seq>`). A time has 9 base-36 digits, a nonce 12.
pub(crate) fn parse_batch(name: &str) -> Option<(u64, Option<i64>)> {
    let mut parts = name.split('-');
    let seq = parts.next()?.parse().ok()?;
    let at = parts
        .next()
        .filter(|t| t.len() == 9)
        .and_then(|t| u64::from_str_radix(t, 36).ok())
        .and_then(|v| i64::try_from(v).ok());
    Some((seq, at))
}

/// The batch number a batch or journal name `<seq>-…` starts with.
pub(crate) fn batch_seq(name: &str) -> Option<u64> {
    parse_batch(name).map(|(seq, _)| seq)
}
