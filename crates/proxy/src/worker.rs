//! Which serving worker a thread is, for the state each worker keeps for itself.
//!
//! With `workers = N` (N > 1) Tether serves on N threads, each a single-threaded runtime with its
//! own I/O driver, its own listening sockets (`SO_REUSEPORT`) and its own slot of every
//! server's connection pool: a pooled connection is registered with the driver of the runtime
//! that opened it, and only that runtime may poll it. Slot 0 belongs to any runtime that is not
//! a dedicated worker (the one runtime of `workers = 1`, or a test's); the workers take slots 1
//! to N. [`set_count`] is called once, before the first pool is made.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Dedicated workers of this process (0: serving runs on the one runtime).
static COUNT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's pool slot: 0 unless it is a dedicated worker's.
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// The number of dedicated workers, before any pool is made (a pool made earlier has one slot,
/// and a worker it has no slot for does not pool its connections to that server).
pub fn set_count(workers: usize) {
    COUNT.fetch_max(workers, Relaxed);
}

/// Pool slots a pool needs: one per dedicated worker, and slot 0.
pub fn slots() -> usize {
    COUNT.load(Relaxed) + 1
}

/// Mark this thread as worker `index` (0-based): it uses slot `index + 1`.
pub fn enter(index: usize) {
    SLOT.with(|s| s.set(index + 1));
}

/// This thread's slot.
#[inline]
pub fn slot() -> usize {
    SLOT.with(Cell::get)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_worker_thread_has_its_own_slot_and_any_other_thread_slot_zero() {
        super::set_count(3);
        assert!(super::slots() >= 4);
        assert_eq!(super::slot(), 0);
        let on_worker = std::thread::spawn(|| {
            super::enter(2);
            super::slot()
        })
        .join()
        .unwrap();
        assert_eq!(on_worker, 3);
        assert_eq!(super::slot(), 0, "another thread is not touched");
    }
}
