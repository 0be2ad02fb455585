//! The simulated store: every request waits in a queue until the scheduler completes it, in a
//! seeded random order, with the faults of the model injected by seed.
//!
//! Faults (writes): failed before taking effect; failed after taking effect; answered with an
//! error now and landing later ("late"); taking effect now and once more later ("duplicate",
//! what a client retry or a proxy replay does); taking effect and delivered again at once,
//! answered by the second copy ("replayed"). Reads fail before taking effect. Every late or
//! duplicate write lands within [`LATE_HORIZON_MS`] of simulated time. Every journal ever
//! written is archived, so the checker can audit history that GC has since removed.

use async_trait::async_trait;
use futures::channel::oneshot;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tally_core::store::memory::MemoryStore;
use tally_core::store::{ListPage, Object, PutMode, Store, StoreError, Version};

/// Late and duplicate writes land within this much simulated time.
pub const LATE_HORIZON_MS: i64 = 1_500;

/// A small deterministic generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    /// True with probability `p` per mille.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Fault rates in per mille of requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub fail_before: u64,
    pub fail_after: u64,
    pub late: u64,
    pub duplicate: u64,
    /// Taking effect, then delivered again at once, the caller hearing the second copy's
    /// answer (a retrying proxy: a create or compare-and-swap that landed answers 412).
    pub replayed: u64,
    pub read_fail: u64,
}

/// One request of the store API.
#[derive(Debug, Clone)]
pub enum Op {
    Get(String),
    Put(String, Vec<u8>, PutMode),
    List(String, Option<String>),
    Delete(String),
    DeleteMany(Vec<String>),
}

impl Op {
    fn is_write(&self) -> bool {
        !matches!(self, Op::Get(_) | Op::List(..))
    }
    fn describe(&self) -> String {
        match self {
            Op::Get(k) => format!("GET {k}"),
            Op::Put(k, _, m) => format!("PUT {k} {m:?}"),
            Op::List(p, a) => format!("LIST {p} after {a:?}"),
            Op::Delete(k) => format!("DELETE {k}"),
            Op::DeleteMany(ks) => format!("DELETE {} keys", ks.len()),
        }
    }
}

/// The answer to a request.
#[derive(Debug)]
pub enum Reply {
    Get(Result<Option<Object>, StoreError>),
    Put(Result<Version, StoreError>),
    List(Result<ListPage, StoreError>),
    Unit(Result<(), StoreError>),
}

struct Waiting {
    op: Op,
    from: String,
    reply: oneshot::Sender<Reply>,
}

struct Late {
    due: i64,
    op: Op,
}

/// The shared simulated world: the store, the clock and the request queue.
pub struct World {
    inner: MemoryStore,
    queue: Mutex<Vec<Waiting>>,
    late: Mutex<Vec<Late>>,
    pub rng: Mutex<Rng>,
    now: AtomicI64,
    faults: Mutex<Faults>,
    faults_on: AtomicBool,
    trace_on: bool,
    trace: Mutex<Vec<String>>,
    archive: Mutex<BTreeMap<String, Vec<u8>>>,
    requests: AtomicI64,
}

impl World {
    pub fn new(seed: u64, start_ms: i64, faults: Faults, trace_on: bool) -> Arc<World> {
        Arc::new(World {
            inner: MemoryStore::new(),
            queue: Mutex::new(Vec::new()),
            late: Mutex::new(Vec::new()),
            rng: Mutex::new(Rng::new(seed)),
            now: AtomicI64::new(start_ms),
            faults: Mutex::new(faults),
            faults_on: AtomicBool::new(true),
            trace_on,
            trace: Mutex::new(Vec::new()),
            archive: Mutex::new(BTreeMap::new()),
            requests: AtomicI64::new(0),
        })
    }

    /// Simulated time (epoch ms).
    pub fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn random(&self, n: u64) -> u64 {
        self.rng.lock().unwrap().below(n)
    }

    pub fn chance(&self, per_mille: u64) -> bool {
        self.rng.lock().unwrap().chance(per_mille)
    }

    pub fn set_faults(&self, on: bool) {
        self.faults_on.store(on, Ordering::SeqCst);
    }

    pub fn note(&self, line: impl FnOnce() -> String) {
        if self.trace_on {
            let l = format!("[{:>6}] {}", self.now() % 1_000_000, line());
            self.trace.lock().unwrap().push(l);
        }
    }

    pub fn take_trace(&self) -> Vec<String> {
        std::mem::take(&mut *self.trace.lock().unwrap())
    }

    pub fn requests(&self) -> i64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Every journal ever written, by key.
    pub fn archive(&self) -> BTreeMap<String, Vec<u8>> {
        self.archive.lock().unwrap().clone()
    }

    /// The store without faults or scheduling (for the checker's reads).
    pub fn direct(&self) -> &MemoryStore {
        &self.inner
    }

    /// Requests waiting for an answer, and writes still to land.
    pub fn busy(&self) -> bool {
        !self.queue.lock().unwrap().is_empty() || !self.late.lock().unwrap().is_empty()
    }

    pub fn queued(&self) -> usize {
        self.queue.lock().unwrap().len()
    }

    fn execute(&self, op: &Op) -> Reply {
        use futures::executor::block_on;
        let r = match op {
            Op::Get(k) => Reply::Get(block_on(self.inner.get(k))),
            Op::Put(k, b, m) => {
                let r = block_on(self.inner.put(k, b.clone(), m.clone()));
                if r.is_ok() && k.contains("/j/") {
                    self.archive.lock().unwrap().insert(k.clone(), b.clone());
                }
                Reply::Put(r)
            }
            Op::List(p, a) => Reply::List(block_on(self.inner.list(p, a.as_deref()))),
            Op::Delete(k) => Reply::Unit(block_on(self.inner.delete(k))),
            Op::DeleteMany(ks) => Reply::Unit(block_on(self.inner.delete_many(ks))),
        };
        self.requests.fetch_add(1, Ordering::SeqCst);
        r
    }

    fn failure(op: &Op, what: &str) -> Reply {
        // Only "failed before" is known not to have taken effect.
        let ambiguous = what != "failed before" && what != "read failed";
        let e = || StoreError::Transient {
            message: format!("simulated fault: {what}"),
            ambiguous,
        };
        match op {
            Op::Get(_) => Reply::Get(Err(e())),
            Op::Put(..) => Reply::Put(Err(e())),
            Op::List(..) => Reply::List(Err(e())),
            Op::Delete(_) | Op::DeleteMany(_) => Reply::Unit(Err(e())),
        }
    }

    /// Completes one waiting request (or lands one due late write). False when idle.
    pub fn step(&self) -> bool {
        let dt = 1 + self.random(4) as i64;
        self.advance(dt);
        let now = self.now();
        let due = {
            let mut late = self.late.lock().unwrap();
            let i = late.iter().position(|l| l.due <= now);
            i.map(|i| late.remove(i))
        };
        if let Some(l) = due {
            self.note(|| format!("lands late: {}", l.op.describe()));
            let _ = self.execute(&l.op);
            return true;
        }
        let waiting = {
            let mut q = self.queue.lock().unwrap();
            if q.is_empty() {
                None
            } else {
                let i = self.random(q.len() as u64) as usize;
                Some(q.swap_remove(i))
            }
        };
        let Some(w) = waiting else {
            // Nothing waiting: land the next late write early rather than idle.
            let next = {
                let mut late = self.late.lock().unwrap();
                (!late.is_empty()).then(|| late.remove(0))
            };
            return match next {
                Some(l) => {
                    self.note(|| format!("lands late: {}", l.op.describe()));
                    let _ = self.execute(&l.op);
                    true
                }
                None => false,
            };
        };
        let f = *self.faults.lock().unwrap();
        let on = self.faults_on.load(Ordering::SeqCst);
        let pick = if on { self.random(1000) } else { 1000 };
        let reply = if w.op.is_write() {
            let mut edge = f.fail_before;
            if pick < edge {
                self.note(|| format!("{}: fails before: {}", w.from, w.op.describe()));
                Self::failure(&w.op, "failed before")
            } else if pick < {
                edge += f.fail_after;
                edge
            } {
                self.note(|| format!("{}: fails after: {}", w.from, w.op.describe()));
                let _ = self.execute(&w.op);
                Self::failure(&w.op, "failed after taking effect")
            } else if pick < {
                edge += f.late;
                edge
            } {
                self.note(|| format!("{}: answered now, lands late: {}", w.from, w.op.describe()));
                let due = now + 1 + self.random(LATE_HORIZON_MS as u64) as i64;
                self.late.lock().unwrap().push(Late {
                    due,
                    op: w.op.clone(),
                });
                Self::failure(&w.op, "timed out")
            } else if pick < {
                edge += f.replayed;
                edge
            } {
                self.note(|| format!("{}: replayed at once: {}", w.from, w.op.describe()));
                let _ = self.execute(&w.op);
                self.execute(&w.op)
            } else if pick < {
                edge += f.duplicate;
                edge
            } {
                self.note(|| format!("{}: delivered twice: {}", w.from, w.op.describe()));
                let due = now + 1 + self.random(LATE_HORIZON_MS as u64) as i64;
                self.late.lock().unwrap().push(Late {
                    due,
                    op: w.op.clone(),
                });
                self.execute(&w.op)
            } else {
                self.note(|| format!("{}: {}", w.from, w.op.describe()));
                self.execute(&w.op)
            }
        } else if pick < f.read_fail {
            self.note(|| format!("{}: read fails: {}", w.from, w.op.describe()));
            Self::failure(&w.op, "read failed")
        } else {
            self.note(|| format!("{}: {}", w.from, w.op.describe()));
            self.execute(&w.op)
        };
        // The caller may have crashed meanwhile: then nobody hears the answer.
        let _ = w.reply.send(reply);
        true
    }

    /// Lands every late write now (faults are off at the end of a run).
    pub fn flush_late(&self) {
        let late = std::mem::take(&mut *self.late.lock().unwrap());
        for l in late {
            self.note(|| format!("lands late (flush): {}", l.op.describe()));
            let _ = self.execute(&l.op);
        }
    }
}

/// One process's handle on the world's store.
pub struct SimStore {
    pub world: Arc<World>,
    pub name: String,
}

impl SimStore {
    async fn call(&self, op: Op) -> Reply {
        let (tx, rx) = oneshot::channel();
        self.world.queue.lock().unwrap().push(Waiting {
            op: op.clone(),
            from: self.name.clone(),
            reply: tx,
        });
        match rx.await {
            Ok(r) => r,
            Err(_) => World::failure(&op, "lost"),
        }
    }
}

fn mismatch() -> StoreError {
    StoreError::Backend("simulator: reply of the wrong kind".into())
}

#[async_trait]
impl Store for SimStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        match self.call(Op::Get(key.into())).await {
            Reply::Get(r) => r,
            _ => Err(mismatch()),
        }
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        match self.call(Op::Put(key.into(), bytes, mode)).await {
            Reply::Put(r) => r,
            _ => Err(mismatch()),
        }
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError> {
        match self
            .call(Op::List(prefix.into(), start_after.map(str::to_string)))
            .await
        {
            Reply::List(r) => r,
            _ => Err(mismatch()),
        }
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.call(Op::Delete(key.into())).await {
            Reply::Unit(r) => r,
            _ => Err(mismatch()),
        }
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        match self.call(Op::DeleteMany(keys.to_vec())).await {
            Reply::Unit(r) => r,
            _ => Err(mismatch()),
        }
    }
    fn describe(&self) -> String {
        format!("sim://{}", self.name)
    }
}
