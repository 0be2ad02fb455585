//! Injected time, sleep and randomness, so tests, simulations and fixtures are deterministic.

use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A source of the current time in epoch milliseconds.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock. Not usable on `wasm32-unknown-unknown` (bindings inject their own).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn new(ms: i64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(ms)))
    }
    /// Sets the time.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    /// Moves the time forward.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Async sleeping, injected so the core does not depend on a runtime.
pub trait Sleeper: Send + Sync {
    /// Resolves after about `ms` milliseconds.
    fn sleep(&self, ms: u64) -> BoxFuture<'static, ()>;
}

/// A sleeper that only yields once (used where no runtime timer exists, e.g. in WASM).
#[derive(Debug, Default, Clone, Copy)]
pub struct YieldSleeper;

impl Sleeper for YieldSleeper {
    fn sleep(&self, _ms: u64) -> BoxFuture<'static, ()> {
        Box::pin(YieldOnce(false))
    }
}

struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

/// Tokio's timer.
#[cfg(feature = "fs")]
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioSleeper;

#[cfg(feature = "fs")]
impl Sleeper for TokioSleeper {
    fn sleep(&self, ms: u64) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(ms)))
    }
}

/// The default sleeper of this build: tokio's when available, else [`YieldSleeper`].
pub fn default_sleeper() -> Arc<dyn Sleeper> {
    #[cfg(feature = "fs")]
    {
        Arc::new(TokioSleeper)
    }
    #[cfg(not(feature = "fs"))]
    {
        Arc::new(YieldSleeper)
    }
}

/// A source of random 64-bit numbers for ids and jitter.
pub trait IdSource: Send + Sync {
    /// The next random number.
    fn next_u64(&self) -> u64;
}

/// A splitmix64 generator; seeded from the time and process id unless given a seed.
#[derive(Debug)]
pub struct SplitMix(Mutex<u64>);

impl SplitMix {
    /// A generator with a fixed seed (deterministic ids for tests and fixtures).
    pub fn seeded(seed: u64) -> Self {
        SplitMix(Mutex::new(seed))
    }
    /// A generator seeded from the clock, the process id and a process-wide counter.
    pub fn from_entropy() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let c = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self::seeded(nanos ^ (u64::from(std::process::id()) << 32) ^ c.wrapping_mul(0x9E37_79B9))
    }
}

impl IdSource for SplitMix {
    fn next_u64(&self) -> u64 {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Base-36 digits of `n`, left-padded with zeros to `width` (higher digits are dropped).
pub fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
}
