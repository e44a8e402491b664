//! Which serving worker a thread is, and state kept per worker.
//!
//! With `workers = N` (N > 1) Tether serves on N threads, each a single-threaded runtime with its
//! own I/O driver, its own listening sockets (`SO_REUSEPORT`), its own slot of every server's
//! connection pool and its own cells of every counter. Slot 0 belongs to any thread that is not a
//! dedicated worker (the one runtime of `workers = 1`, the control plane, a test's); the workers
//! take slots 1 to N. [`set_count`] is called once, before the first pool or counter is made.
//!
//! [`PerWorker`] is the counters' shape: one cell per slot, each on cache lines of its own, so a
//! worker counting a request never writes a line another worker writes. A cell is still made of
//! relaxed atomics (the control plane resets some, a scrape reads them all), but no two threads
//! increment the same one while each worker is the only thread on its slot. A read sums the
//! cells ([`PerWorker::sum`]); the counts are then as exact as the atomics were before, only
//! read from N + 1 places.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Dedicated workers of this process (0: serving runs on the one runtime).
static COUNT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot: 0 unless it is a dedicated worker's.
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// The number of dedicated workers, before any pool or counter is made (one made earlier has a
/// single slot: a worker it has no slot for shares slot 0, or, for a pool, pools nothing).
pub fn set_count(workers: usize) {
    COUNT.fetch_max(workers, Relaxed);
}

/// Slots a per-worker value needs: one per dedicated worker, and slot 0.
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

/// A value on cache lines of its own (128 bytes: two lines, as the adjacent-line prefetcher of
/// x86 pulls pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// One `T` per slot ([`slots`] when made), each [`Padded`].
#[derive(Debug)]
pub struct PerWorker<T> {
    cells: Box<[Padded<T>]>,
}

impl<T: Default> Default for PerWorker<T> {
    fn default() -> Self {
        PerWorker::new(|| T::default())
    }
}

impl<T> PerWorker<T> {
    /// A cell for each slot, each made by `make`.
    pub fn new(mut make: impl FnMut() -> T) -> PerWorker<T> {
        PerWorker {
            cells: (0..slots()).map(|_| Padded(make())).collect(),
        }
    }

    /// This thread's cell, if it has one.
    #[inline]
    pub fn mine(&self) -> Option<&T> {
        self.cells.get(slot()).map(|c| &c.0)
    }

    /// This thread's cell, or slot 0's for a worker started after this was made (counters:
    /// shared then, still correct).
    #[inline]
    pub fn here(&self) -> &T {
        match self.cells.get(slot()) {
            Some(c) => &c.0,
            None => &self.cells[0].0,
        }
    }

    /// Every cell, slot 0 first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.cells.iter().map(|c| &c.0)
    }

    /// The sum over every cell of what `f` reads from it.
    pub fn sum(&self, f: impl Fn(&T) -> u64) -> u64 {
        self.iter().map(f).fold(0, u64::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn a_worker_thread_has_its_own_slot_and_any_other_thread_slot_zero() {
        set_count(3);
        assert!(slots() >= 4);
        assert_eq!(slot(), 0);
        let on_worker = std::thread::spawn(|| {
            enter(2);
            slot()
        })
        .join()
        .unwrap();
        assert_eq!(on_worker, 3);
        assert_eq!(slot(), 0, "another thread is not touched");
    }

    #[test]
    fn each_worker_counts_in_its_own_cell_and_a_read_sums_them() {
        set_count(3);
        let c = std::sync::Arc::new(PerWorker::<AtomicU64>::default());
        std::thread::scope(|s| {
            for w in 0..3 {
                let c = c.clone();
                s.spawn(move || {
                    enter(w);
                    for _ in 0..=w {
                        c.here().fetch_add(1, Relaxed);
                    }
                });
            }
        });
        c.here().fetch_add(10, Relaxed);
        let cells: Vec<u64> = c.iter().map(|a| a.load(Relaxed)).collect();
        assert_eq!(&cells[..4], &[10, 1, 2, 3], "one cell per slot");
        assert_eq!(c.sum(|a| a.load(Relaxed)), 16);
        // Cells never share a cache line.
        let a = c.iter().next().unwrap() as *const AtomicU64 as usize;
        let b = c.iter().nth(1).unwrap() as *const AtomicU64 as usize;
        assert!(b - a >= 128);
    }

    #[test]
    fn a_thread_without_a_cell_counts_in_slot_zero_and_pools_nothing() {
        let c = PerWorker::<AtomicU64>::new(AtomicU64::default);
        let n = slots();
        std::thread::spawn(move || {
            enter(n + 5);
            assert!(c.mine().is_none());
            c.here().fetch_add(1, Relaxed);
            assert_eq!(c.iter().next().unwrap().load(Relaxed), 1);
        })
        .join()
        .unwrap();
    }
}
