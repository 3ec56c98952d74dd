//! [`ThreadPool`]: a fixed set of worker threads for splitting one run over
//! several cores (batch-1 latency). Only with the `std` feature.
//!
//! The pool is created once: `ThreadPool::new(n)` spawns `n - 1` workers and
//! the calling thread is the n-th participant. Each [`ThreadPool::broadcast`]
//! hands one borrowed job to every participant and returns only when all of
//! them have finished it, like [`std::thread::scope`] but without spawning:
//!
//! * **No allocation per job.** The job is a `&dyn Fn(usize)` borrowed from the
//!   caller's stack; publishing it is a store under a mutex and a condition
//!   variable wake-up (futex-based, allocation-free on the platforms `std`
//!   supports). Only [`ThreadPool::new`] allocates (the thread handles).
//! * **Workers park between jobs.** A worker spins briefly for the next job
//!   (one run publishes a job every few hundred microseconds, and a wake-up
//!   from a parked state costs tens of microseconds), then blocks on a
//!   condition variable; an idle pool uses no CPU.
//! * **Panics.** A panic inside the job on a worker is caught there, the other
//!   participants finish, and then `broadcast` panics on the calling thread.
//!   A panic on the calling thread's share waits for the workers before it
//!   unwinds. Either way no worker still holds the job when `broadcast`
//!   returns or unwinds, and the pool stays usable.
//!
//! Jobs must not call `broadcast` on the same pool (that would deadlock);
//! concurrent `broadcast` calls from different threads are serialized.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a thread polls (for the next job, or for the workers to finish)
/// before it blocks. Measured in time, not iterations: a spin-loop hint costs
/// from a few cycles (Arm `yield`) to ~100 (recent x86 `pause`).
const SPIN: Duration = Duration::from_micros(if cfg!(miri) { 1 } else { 100 });

/// Polls `cond` until it is false or [`SPIN`] has passed.
fn spin_while(cond: impl Fn() -> bool) {
    let start = Instant::now();
    loop {
        for _ in 0..32 {
            if !cond() {
                return;
            }
            core::hint::spin_loop();
        }
        if start.elapsed() >= SPIN {
            return;
        }
    }
}

/// A job as the workers see it: its borrow's lifetime is erased (see the
/// SAFETY comment in [`ThreadPool::broadcast`]).
type JobRef = &'static (dyn Fn(usize) + Sync + 'static);

/// State shared by the caller and the workers.
struct Shared {
    state: Mutex<State>,
    /// Signalled when a new job is published (or on shutdown).
    work: Condvar,
    /// Signalled when the last worker finishes a job.
    done: Condvar,
    /// Copy of `State::generation`, polled by spinning workers.
    generation: AtomicU64,
    /// Workers still running the current job, polled by the caller.
    pending: AtomicUsize,
}

struct State {
    /// Incremented for every job.
    generation: u64,
    /// The current job; `None` between jobs.
    job: Option<JobRef>,
    /// Whether a worker panicked during the current job.
    panicked: bool,
    /// Set once by `Drop`.
    shutdown: bool,
}

/// A fixed pool of worker threads; see the [module docs](self).
pub struct ThreadPool {
    shared: Arc<Shared>,
    /// Serializes `broadcast` calls from different threads.
    entry: Mutex<()>,
    workers: Vec<JoinHandle<()>>,
}

impl core::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; tolerate poisoning anyway.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ThreadPool {
    /// A pool of `threads` participants: the calling thread plus `threads - 1`
    /// spawned workers (`0` is treated as `1`, which spawns nothing). Fails only
    /// if the operating system refuses to create a thread.
    pub fn new(threads: usize) -> std::io::Result<ThreadPool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                job: None,
                panicked: false,
                shutdown: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            generation: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
        });
        let mut pool = ThreadPool {
            shared,
            entry: Mutex::new(()),
            workers: Vec::with_capacity(threads.saturating_sub(1)),
        };
        // Each worker reports once it has started (see `worker`).
        pool.shared
            .pending
            .store(threads.saturating_sub(1), Ordering::SeqCst);
        for index in 1..threads.max(1) {
            let shared = Arc::clone(&pool.shared);
            let handle = std::thread::Builder::new()
                .name(format!("albert-edge-{index}"))
                .spawn(move || worker(&shared, index))?;
            // On error `pool` is dropped here, which stops the workers already spawned.
            pool.workers.push(handle);
        }
        // Return only once every worker runs: a thread's start-up (its name,
        // its thread-local state) allocates, and that belongs to `new`, not to
        // the first job.
        pool.wait_for_workers();
        Ok(pool)
    }

    /// A pool with one participant per available CPU
    /// ([`std::thread::available_parallelism`], 1 if unknown).
    pub fn with_available_parallelism() -> std::io::Result<ThreadPool> {
        ThreadPool::new(available_parallelism())
    }

    /// Participants: spawned workers plus the calling thread.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `job(i)` once for every `i` in `0..self.threads()`, each on a
    /// different thread (`0` on the calling thread), and returns when all calls
    /// have returned.
    ///
    /// # Panics
    ///
    /// If any call panics, after all the others have finished.
    pub fn broadcast(&self, job: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() {
            job(0);
            return;
        }
        let _entry = lock(&self.entry);
        let sh = &*self.shared;
        // SAFETY: only the lifetime is changed. The erased reference is
        // stored in `State::job` and copied by workers, and this function does
        // not return or unwind before (a) every worker has finished its call and
        // decremented `pending`, which it does only after its last use of the
        // copy (`wait_for_workers` below, reached on both the normal and the
        // panic path because our own share runs under `catch_unwind`), and (b)
        // the stored reference is cleared. Workers read a job only for a new
        // generation, so no stale copy is used later.
        let erased: JobRef = unsafe {
            core::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(job)
        };
        {
            let mut st = lock(&sh.state);
            st.job = Some(erased);
            st.panicked = false;
            st.generation += 1;
            sh.pending.store(self.workers.len(), Ordering::SeqCst);
            sh.generation.store(st.generation, Ordering::SeqCst);
            sh.work.notify_all();
        }
        let mine = panic::catch_unwind(AssertUnwindSafe(|| job(0)));
        let worker_panicked = self.wait_for_workers();
        if let Err(payload) = mine {
            panic::resume_unwind(payload);
        }
        if worker_panicked {
            panic!("a thread-pool worker panicked");
        }
    }

    /// Waits until every worker has finished the current job, clears it, and
    /// reports whether any of them panicked.
    fn wait_for_workers(&self) -> bool {
        let sh = &*self.shared;
        spin_while(|| sh.pending.load(Ordering::Acquire) != 0);
        let mut st = lock(&sh.state);
        while sh.pending.load(Ordering::Acquire) != 0 {
            st = sh.done.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st.job = None;
        st.panicked
    }

    /// Runs `f` on every element of `items`, spread over the pool's threads.
    /// Each element is handed to exactly one call; which thread makes it is not
    /// fixed (threads take the next unclaimed element), so results must not
    /// depend on the thread.
    ///
    /// # Panics
    ///
    /// If any call panics (after the other threads have stopped).
    pub fn for_each_mut<T: Send>(&self, items: &mut [T], f: &(dyn Fn(&mut T) + Sync)) {
        if self.workers.is_empty() || items.len() <= 1 {
            items.iter_mut().for_each(f);
            return;
        }
        let next = AtomicUsize::new(0);
        let len = items.len();
        let base = SendPtr(items.as_mut_ptr());
        self.broadcast(&|_| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= len {
                break;
            }
            // SAFETY: `i < len` indexes `items`, which is mutably borrowed for
            // this whole call (`broadcast` returns only after every thread has
            // stopped using it). `fetch_add` hands out each index exactly once,
            // so no two threads ever hold a reference to the same element, and
            // `T: Send` allows handing it to another thread.
            let item = unsafe { &mut *base.get().add(i) };
            f(item);
        });
    }
}

/// A raw pointer that may be shared with the pool's threads; see the SAFETY
/// comment in [`ThreadPool::for_each_mut`].
struct SendPtr<T>(*mut T);

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn get(&self) -> *mut T {
        self.0
    }
}

// SAFETY: the pointer is only dereferenced at indices handed out once each
// (see `for_each_mut`), to elements whose type is `Send`.
unsafe impl<T: Send> Sync for SendPtr<T> {}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let mut st = lock(&self.shared.state);
            st.shutdown = true;
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
            self.shared.work.notify_all();
        }
        for h in self.workers.drain(..) {
            // A worker never panics outside `catch_unwind`; ignore if it did.
            let _ = h.join();
        }
    }
}

/// The body of worker `index`.
fn worker(sh: &Shared, index: usize) {
    let mut seen = 0u64;
    // Start-up is done: tell `ThreadPool::new`.
    finished(sh);
    loop {
        // Poll briefly: the next job of a run usually follows within microseconds.
        spin_while(|| sh.generation.load(Ordering::Acquire) == seen);
        let job = {
            let mut st = lock(&sh.state);
            while st.generation == seen && !st.shutdown {
                st = sh.work.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            if st.shutdown {
                return;
            }
            seen = st.generation;
            match st.job {
                Some(j) => j,
                // Unreachable: a new generation always carries a job until every
                // worker has finished it.
                None => continue,
            }
        };
        let ok = panic::catch_unwind(AssertUnwindSafe(|| job(index))).is_ok();
        if !ok {
            lock(&sh.state).panicked = true;
        }
        // Last use of `job` was above; after this the caller may return.
        finished(sh);
    }
}

/// Counts one worker off `pending`; the last one wakes the caller.
fn finished(sh: &Shared) {
    if sh.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        let _st = lock(&sh.state);
        sh.done.notify_all();
    }
}

/// [`std::thread::available_parallelism`], or 1 when unknown.
pub fn available_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    //! Small enough for Miri (`cargo +nightly miri test --lib pool`), which
    //! checks the lifetime-erased job and the shared element pointer.
    use super::*;

    #[test]
    fn broadcast_and_for_each_mut_cover_everything_once() {
        let pool = ThreadPool::new(3).unwrap();
        let hits: [AtomicUsize; 3] = Default::default();
        for _ in 0..3 {
            pool.broadcast(&|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 3));
        let mut items = [0usize; 7];
        pool.for_each_mut(&mut items, &|v| *v += 1);
        pool.for_each_mut(&mut items, &|v| *v += 1);
        assert_eq!(items, [2; 7]);
    }

    #[test]
    fn panics_reach_the_caller_and_the_pool_survives() {
        let pool = ThreadPool::new(2).unwrap();
        for bad in [0, 1] {
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                pool.broadcast(&|i| assert_ne!(i, bad, "job panics"));
            }));
            assert!(r.is_err());
        }
        let mut items = [1u8; 4];
        pool.for_each_mut(&mut items, &|v| *v *= 3);
        assert_eq!(items, [3; 4]);
    }

    #[test]
    fn a_one_thread_pool_runs_on_the_caller() {
        let pool = ThreadPool::new(0).unwrap();
        assert_eq!(pool.threads(), 1);
        let me = std::thread::current().id();
        pool.broadcast(&|i| {
            assert_eq!(i, 0);
            assert_eq!(std::thread::current().id(), me);
        });
    }
}
