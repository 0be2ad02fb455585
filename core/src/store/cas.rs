//! Compare-and-swap loops: the one retry policy of every read-modify-write (and read, then
//! validate) loop of the core, and the check that a create-only write answered 412 was our
//! own.
//!
//! A loop reads an object, computes, and writes it back conditioned on the version it read
//! (or reads several objects and checks that they still agree). When another writer got
//! there first the condition fails and the loop starts over from a fresh read. How often it
//! may start over is the loop's [`RetryPolicy`], stated where the loop is written:
//!
//! ```
//! use tally_core::store::cas::RetryPolicy;
//!
//! let mut reads = 0;
//! for _attempt in RetryPolicy::AtMost(3).attempts() {
//!     reads += 1; // read, compute, write conditioned on the version read …
//! }
//! assert_eq!(reads, 3); // … every write lost: the caller says what kept changing
//! ```

use super::Store;

/// How many attempts a compare-and-swap loop may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Until done: every lost compare-and-swap means another writer committed, so the loop
    /// is lock-free. For writes a user is waiting on whose loss would drop the user's change
    /// (inserting, updating and deleting a record, a host record's bookkeeping), or whose
    /// lost swaps an inner `AtMost` bounds (the analytics fold).
    UntilDone,
    /// At most this many attempts; then the caller reports that the object kept changing
    /// (`ERR_CONFLICT`), and the user may try again. For work that someone else's progress
    /// can starve (consolidation, reads that must see one consistent state).
    AtMost(u32),
}

impl RetryPolicy {
    /// The attempt numbers the policy allows, from 1: `for attempt in policy.attempts()`.
    /// [`RetryPolicy::UntilDone`] ends only at `u32::MAX`, which no loop reaches.
    pub fn attempts(self) -> std::ops::RangeInclusive<u32> {
        match self {
            RetryPolicy::UntilDone => 1..=u32::MAX,
            RetryPolicy::AtMost(n) => 1..=n,
        }
    }

    /// True when attempt `attempt` is not the last the policy allows.
    pub fn allows_after(self, attempt: u32) -> bool {
        match self {
            RetryPolicy::UntilDone => attempt < u32::MAX,
            RetryPolicy::AtMost(n) => attempt < n,
        }
    }

    /// The `ERR_CONFLICT` error of a loop that used up its attempts on `what`.
    pub fn exhausted(self, what: &str) -> crate::error::Error {
        let n = *self.attempts().end();
        crate::error::Error::new(
            crate::error::ErrorCode::Conflict,
            format!("{what} kept changing; gave up after {n} attempts"),
        )
    }
}

/// True when `key` now holds exactly `body`: a create-only put of those bytes that was
/// answered 412 had landed after all (a proxy, or a retry of a request that took effect, sent
/// it twice). A failed read answers false, so the caller reports the conflict it got.
pub async fn holds(store: &dyn Store, key: &str, body: &[u8]) -> bool {
    store
        .get(key)
        .await
        .ok()
        .flatten()
        .is_some_and(|o| o.bytes == body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{PutMode, StoreError};

    #[test]
    fn a_bounded_policy_allows_exactly_its_attempts() {
        let p = RetryPolicy::AtMost(3);
        assert_eq!(p.attempts().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(p.allows_after(2));
        assert!(!p.allows_after(3));
        assert_eq!(RetryPolicy::AtMost(0).attempts().count(), 0);
        let e = p.exhausted("record \"a\"");
        assert_eq!(e.code(), crate::error::ErrorCode::Conflict);
        assert_eq!(
            e.message(),
            "record \"a\" kept changing; gave up after 3 attempts"
        );
    }

    #[test]
    fn until_done_goes_on() {
        let p = RetryPolicy::UntilDone;
        assert_eq!(p.attempts().take(1000).count(), 1000);
        assert!(p.allows_after(1_000_000));
    }

    #[tokio::test]
    async fn a_conflict_is_ours_only_when_the_key_holds_our_bytes() {
        let store = MemoryStore::new();
        store
            .put("k", b"ours".to_vec(), PutMode::Create)
            .await
            .unwrap();
        let again = store.put("k", b"ours".to_vec(), PutMode::Create).await;
        assert!(matches!(again, Err(StoreError::Conflict { .. })));
        assert!(holds(&store, "k", b"ours").await);
        assert!(!holds(&store, "k", b"theirs").await);
        assert!(!holds(&store, "missing", b"ours").await);
    }
}
