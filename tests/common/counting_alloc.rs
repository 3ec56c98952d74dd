//! A global allocator that forwards to the system allocator and counts the
//! allocations and reallocations made by the threads that asked to be counted
//! ([`count_this_thread`]). Included with `#[path]` by the tests that prove
//! code allocation-free; it installs itself as the test binary's
//! `#[global_allocator]`.
//!
//! Counting only chosen threads keeps other threads of the process out of the
//! count: the test harness's own thread formats and prints a "has been
//! running for over 60 seconds" line while a slow test (under emulation)
//! runs, which a process-wide count took for an allocation of the code under
//! test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const` and `Copy`: reading it never allocates (no lazy initializer,
    // no destructor to register), so the allocator may read it.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// From now on, count the calling thread's allocations.
pub fn count_this_thread() {
    COUNTED.with(|c| c.set(true));
}

/// Allocations and reallocations so far by the counted threads.
pub fn allocations() -> usize {
    ALLOCS.load(Ordering::SeqCst)
}
