//! A persistent thread pool: workers are spawned once, and each [`ThreadPool::run`] hands them a
//! borrowed closure and a task count.
//!
//! The calling thread works too, so `ThreadPool::new(n)` spawns `n - 1` workers and
//! `ThreadPool::new(1)` runs everything inline. Tasks are claimed one at a time, so uneven tasks
//! balance themselves.
//!
//! The hot path takes no lock. A job is published through one atomic word, the *ticket*
//! (generation in the high 32 bits, next task index in the low 32); workers claim a task with a
//! compare-and-swap on the whole word, so a worker that still holds an old ticket can never claim
//! (or run the closure of) a newer job. Each thread adds the number of tasks it finished to a
//! completion counter (cumulative over the pool's life), which the caller spins on until it
//! reaches the job's target. Only idle workers (after [`SPIN_ITERS`] polls)
//! and a caller left waiting on a long task go through the mutex and condvars, to sleep; the
//! other side takes the mutex only when it sees a sleeper, to wake it.
//!
//! One caller at a time: `run` takes `&self` (the pool is `Send + Sync` so it can be shared), but
//! concurrent `run`s from two threads are serialized by an internal lock, not interleaved.
//!
//! Memory-ordering sketch (caller `C`, worker `W`; all cross-thread edges are Release/Acquire or
//! SeqCst):
//! - `C` publishes job `g` as: ticket = (g, CLOSED) (relaxed); closure pointer, done target, task
//!   count (Release); ticket = (g, 0) (SeqCst). `W` claims task `i` only by CAS (g, i) -> (g,
//!   i + 1) with `i < n`, `n` read (Acquire) after the ticket. A successful claim reads the
//!   (g, 0) store's release sequence, so `W` sees job `g`'s fields; and reading a field of a
//!   later job would make that job's CLOSED store happen before the CAS, which would then fail.
//! - `C` writes the next job only after `done` reached the target, and every thread adds to
//!   `done` only after its claimed tasks returned: so the closure is never touched after `run`
//!   returns, and no add of an old job can land in a newer one.
//! - Sleeping is Dekker-style on SeqCst atomics: the sleeper announces itself (`sleepers` or
//!   `caller_waiting`) under the mutex and then re-checks the condition; the waker changes the
//!   condition, then checks the announcement and notifies under the mutex. One of the two sees
//!   the other's write, and the mutex closes the gap between check and wait.
//!
//! Generations wrap after 2^32 runs; a worker that slept through exactly that many runs could
//! miss one wake-up poll (it would just not help with that job), nothing worse.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// How many times an idle worker (or a waiting caller) polls before it sleeps.
const SPIN_ITERS: u32 = 1 << 14;

/// Task index of a ticket whose job is being written: no task count reaches it.
const CLOSED: u32 = u32::MAX;

/// The most tasks one published job holds; `run` splits larger counts.
const MAX_TASKS: usize = CLOSED as usize - 1;

type TaskFn = dyn Fn(usize) + Sync;

fn ticket(generation: u32, index: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn generation(t: u64) -> u32 {
    (t >> 32) as u32
}

fn index(t: u64) -> u32 {
    t as u32
}

/// The published job: one cache line, so a worker that sees a new ticket has the rest with it.
#[repr(align(128))]
struct JobLine {
    /// (generation, next task index); see the module docs.
    ticket: AtomicU64,
    /// Points at the caller's `&TaskFn` (on its stack) while a job is live.
    f: AtomicPtr<()>,
    n_tasks: AtomicUsize,
    /// The value of `done` once every task of the job has returned.
    done_target: AtomicUsize,
}

/// Keeps the completion counter off the job's cache line.
#[repr(align(128))]
struct Padded<T>(T);

struct Shared {
    job: JobLine,
    /// Tasks that have returned, over the pool's life (wrapping; added in batches, once per
    /// thread and job), so that a job ends when it reaches `job.done_target`.
    done: Padded<AtomicUsize>,
    /// Some task of the current job panicked (reset by `run` when it re-raises).
    panicked: AtomicBool,
    /// Workers inside the sleep section (counted under `sleep`).
    sleepers: AtomicUsize,
    /// The caller is inside its sleep section, waiting for `done`.
    caller_waiting: AtomicBool,
    shutdown: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
    finished: Condvar,
    /// Serializes callers of `run`.
    caller: Mutex<()>,
}

impl Shared {
    fn lock_sleep(&self) -> MutexGuard<'_, ()> {
        self.sleep.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claim and run tasks of the current job until none are left, then report them in `done`.
    /// Returns the generation found exhausted, or `None` when a job is being published (ticket
    /// CLOSED). Panics are recorded, not propagated.
    fn work(&self) -> Option<u32> {
        let job = &self.job;
        let mut t = job.ticket.load(Acquire);
        let mut ran = 0usize;
        let exhausted = loop {
            if index(t) == CLOSED {
                // Only before a first claim: `run` cannot close the ticket while tasks it
                // claimed are unreported.
                break None;
            }
            if index(t) as usize >= job.n_tasks.load(Acquire) {
                break Some(generation(t));
            }
            match job.ticket.compare_exchange_weak(t, t + 1, AcqRel, Acquire) {
                Ok(_) => {
                    let f = job.f.load(Acquire) as *const &TaskFn;
                    // SAFETY: the claim succeeded on this job's ticket, so `job.f` points at the
                    // caller's `&TaskFn` of this job (module docs), and `run` does not return
                    // (nor rewrite the job) before `done` counts this task, which is added below
                    // after the call.
                    let f: &TaskFn = unsafe { *f };
                    if catch_unwind(AssertUnwindSafe(|| f(index(t) as usize))).is_err() {
                        self.panicked.store(true, Relaxed);
                    }
                    ran += 1;
                    t = job.ticket.load(Acquire);
                }
                Err(now) => t = now,
            }
        };
        if ran > 0 {
            // After a claim, the job cannot change until `done` reaches its target.
            let target = job.done_target.load(Relaxed);
            let now = self.done.0.fetch_add(ran, SeqCst).wrapping_add(ran);
            if now == target && self.caller_waiting.load(SeqCst) {
                let _g = self.lock_sleep();
                self.finished.notify_all();
            }
        }
        exhausted
    }
}

/// Persistent worker threads; see the module docs.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
    /// `run` calls with at least one task (a caller-side counter, for profiling).
    regions: AtomicU64,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool").field("n_threads", &self.n_threads).finish()
    }
}

impl ThreadPool {
    /// A pool of `n_threads` threads in all, counting the caller (0 is taken as 1).
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            job: JobLine {
                ticket: AtomicU64::new(ticket(0, 0)),
                f: AtomicPtr::new(std::ptr::null_mut()),
                n_tasks: AtomicUsize::new(0),
                done_target: AtomicUsize::new(0),
            },
            done: Padded(AtomicUsize::new(0)),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            caller_waiting: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            finished: Condvar::new(),
            caller: Mutex::new(()),
        });
        let workers = (1..n_threads)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("llmopt-worker-{i}"))
                    .spawn(move || worker_loop(&shared))
                    .expect("spawn worker thread")
            })
            .collect();
        ThreadPool { shared, workers, n_threads, regions: AtomicU64::new(0) }
    }

    /// Threads that run tasks, the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Parallel regions run so far: `run` calls with at least one task. Profilers divide their
    /// difference over a decode step by the step count to get regions per token.
    pub fn regions(&self) -> u64 {
        self.regions.load(Relaxed)
    }

    /// Run `f(i)` for every `i in 0..n_tasks` across the workers and the caller; returns when all
    /// are done. A panic in any task is re-raised here after the others finish.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        self.regions.fetch_add(1, Relaxed);
        if self.workers.is_empty() || n_tasks == 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        if n_tasks > MAX_TASKS {
            return self.run_chunked(n_tasks, MAX_TASKS, f);
        }
        let _one_caller = self.shared.caller.lock().unwrap_or_else(|e| e.into_inner());
        let sh = &*self.shared;
        // Lifetime erasure: workers reach `f` only through a claimed task of this job, and `run`
        // returns only after `done` counts every task, i.e. after every call of `f` returned.
        // SAFETY: only the lifetime changes (same fat-pointer layout); see above.
        let f: &TaskFn = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &TaskFn>(f) };
        // The previous job (if any) is complete: nobody holds a claim, so we may rewrite it.
        // The CLOSED store may be relaxed: a worker that reads any field written after it (with
        // Acquire, from a Release store) has it happen before its claim, which then fails.
        let job = &sh.job;
        let gen = generation(job.ticket.load(Relaxed)).wrapping_add(1);
        let target = sh.done.0.load(Relaxed).wrapping_add(n_tasks);
        job.ticket.store(ticket(gen, CLOSED), Relaxed);
        job.f.store(&f as *const &TaskFn as *mut (), Release);
        job.done_target.store(target, Release);
        job.n_tasks.store(n_tasks, Release);
        job.ticket.store(ticket(gen, 0), SeqCst);
        if sh.sleepers.load(SeqCst) > 0 {
            let _g = sh.lock_sleep();
            sh.wake.notify_all();
        }
        sh.work();
        // Wait for workers still inside tasks: spin first, then sleep.
        let mut spins = 0;
        while sh.done.0.load(Acquire) != target {
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
                spins += 1;
                continue;
            }
            let mut g = sh.lock_sleep();
            sh.caller_waiting.store(true, SeqCst);
            while sh.done.0.load(SeqCst) != target {
                g = sh.finished.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            sh.caller_waiting.store(false, SeqCst);
        }
        if sh.panicked.load(Relaxed) {
            sh.panicked.store(false, Relaxed);
            resume_unwind(Box::new("a ThreadPool task panicked"));
        }
    }
}

/// A slice's base pointer handed to the tasks of [`ThreadPool::for_rows_mut`], each of which
/// touches its own rows.
struct RowsPtr<T>(*mut T);
// SAFETY: tasks reach disjoint row ranges only, and `run` returns after all of them, while the
// `&mut [T]` the pointer came from is still borrowed; `T: Send` lets a row move across threads.
unsafe impl<T: Send> Sync for RowsPtr<T> {}

impl<T> RowsPtr<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn get(&self) -> *mut T {
        self.0
    }
}

impl ThreadPool {
    /// Calls `f(first_row, rows)` on `data` cut into runs of whole rows of `width` elements, in
    /// parallel when there are at least `2 * min_rows` rows (runs of at least `min_rows`, about
    /// two per thread), else once inline on all of it: the row-wise steps of a prefill (norms,
    /// activations, quantizing the activations) without a parallel region for a decode step.
    /// Each row is passed to exactly one call, so results do not depend on the split.
    pub fn for_rows_mut<T: Send>(
        &self,
        data: &mut [T],
        width: usize,
        min_rows: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        let n_rows = data.len() / width.max(1);
        let per = n_rows.div_ceil(2 * self.n_threads).max(min_rows.max(1));
        if self.n_threads == 1 || n_rows < 2 * min_rows.max(1) || per >= n_rows {
            return f(0, data);
        }
        let (len, base) = (data.len(), RowsPtr(data.as_mut_ptr()));
        self.run(n_rows.div_ceil(per), &|i| {
            let (r0, r1) = (i * per, ((i + 1) * per).min(n_rows));
            let end = if r1 == n_rows { len } else { r1 * width };
            // SAFETY: task i alone owns elements r0 * width..end (disjoint across tasks, in
            // bounds of `data`, which stays borrowed until `run` returns).
            let rows = unsafe {
                std::slice::from_raw_parts_mut(base.get().add(r0 * width), end - r0 * width)
            };
            f(r0, rows);
        });
    }

    /// More tasks than one job can count: run them as at most `max_jobs` tasks of whole chunks.
    fn run_chunked(&self, n_tasks: usize, max_jobs: usize, f: &(dyn Fn(usize) + Sync)) {
        let chunk = n_tasks.div_ceil(max_jobs);
        self.run(n_tasks.div_ceil(chunk), &|c| {
            (c * chunk..((c + 1) * chunk).min(n_tasks)).for_each(f)
        });
    }
}

fn worker_loop(sh: &Shared) {
    // The last generation this worker found without unclaimed tasks.
    let mut seen = 0u32;
    loop {
        let mut spins = 0;
        while generation(sh.job.ticket.load(Relaxed)) == seen {
            if sh.shutdown.load(Relaxed) {
                return;
            }
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
                spins += 1;
                continue;
            }
            let mut g = sh.lock_sleep();
            sh.sleepers.fetch_add(1, SeqCst);
            while generation(sh.job.ticket.load(SeqCst)) == seen && !sh.shutdown.load(SeqCst) {
                g = sh.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            sh.sleepers.fetch_sub(1, SeqCst);
            spins = 0;
        }
        match sh.work() {
            Some(g) => seen = g,
            None => std::hint::spin_loop(),
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, SeqCst);
        {
            let _g = self.shared.lock_sleep();
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_rows_mut_visits_every_row_once_with_its_index() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            for (n_rows, width, min_rows) in
                [(0, 3, 4), (1, 3, 4), (7, 3, 4), (8, 3, 4), (61, 5, 2)]
            {
                // One trailing element that is not a whole row goes with the last run.
                let mut data = vec![0usize; n_rows * width + 1];
                let before = pool.regions();
                pool.for_rows_mut(&mut data, width, min_rows, &|r0, rows| {
                    for (j, v) in rows.iter_mut().enumerate() {
                        *v += r0 * width + j + 1;
                    }
                });
                let want: Vec<usize> = (1..=data.len()).collect();
                assert_eq!(data, want, "{threads} threads, {n_rows} rows");
                let parallel = threads > 1 && n_rows >= 2 * min_rows;
                assert_eq!(pool.regions() - before, u64::from(parallel), "{threads} {n_rows}");
            }
        }
    }

    #[test]
    fn counts_parallel_regions() {
        for threads in [1, 2] {
            let pool = ThreadPool::new(threads);
            pool.run(0, &|_| {});
            assert_eq!(pool.regions(), 0);
            pool.run(1, &|_| {});
            pool.run(5, &|_| {});
            assert_eq!(pool.regions(), 2, "{threads} threads");
        }
    }

    #[test]
    fn every_task_runs_exactly_once_many_calls() {
        for threads in [1, 2, 3, 8] {
            let pool = ThreadPool::new(threads);
            assert_eq!(pool.n_threads(), threads);
            for call in 0..500 {
                let n = (call * 7) % 41;
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.run(n, &|i| {
                    hits[i].fetch_add(1, SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "{threads} threads, call {call}");
            }
        }
    }

    #[test]
    fn borrows_locals_and_sees_results_after_return() {
        let pool = ThreadPool::new(2);
        let mut out = vec![0usize; 100];
        let ptr = out.as_mut_ptr() as usize;
        pool.run(100, &|i| {
            // SAFETY: each task writes only its own element; `out` outlives `run`.
            unsafe { *(ptr as *mut usize).add(i) = i * i };
        });
        assert!(out.iter().enumerate().all(|(i, v)| *v == i * i));
    }

    #[test]
    fn task_panic_is_reraised_and_pool_stays_usable() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(16, &|i| assert!(i != 5, "task 5 fails"));
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.run(16, &|_| {
            count.fetch_add(1, SeqCst);
        });
        assert_eq!(count.load(SeqCst), 16);
    }

    /// Every task of every run exactly once, with several threads calling `run` concurrently.
    #[test]
    fn stress_concurrent_callers() {
        for threads in [1, 2, 3, 8] {
            let pool = Arc::new(ThreadPool::new(threads));
            let callers: Vec<_> = (0..3)
                .map(|c| {
                    let pool = Arc::clone(&pool);
                    std::thread::spawn(move || {
                        let mut hits: Vec<AtomicUsize> = Vec::new();
                        for call in 0..2000usize {
                            let n = match (call * 31 + c * 7) % 10 {
                                0 => 0,
                                1 => 1,
                                2 => 300,
                                k => k * 3 - 5,
                            };
                            hits.clear();
                            hits.extend((0..n).map(|_| AtomicUsize::new(0)));
                            pool.run(n, &|i| {
                                hits[i].fetch_add(1, SeqCst);
                            });
                            let bad = hits.iter().position(|h| h.load(SeqCst) != 1);
                            assert_eq!(
                                bad, None,
                                "{threads} threads, caller {c}, call {call}, n {n}"
                            );
                        }
                    })
                })
                .collect();
            for c in callers {
                c.join().unwrap();
            }
        }
    }

    /// Workers asleep on the condvar (idle longer than the spin budget) wake for the next run:
    /// each task waits until every thread holds one, which needs all the workers.
    #[test]
    fn sleeping_workers_wake_up() {
        for threads in [2, 3] {
            let pool = ThreadPool::new(threads);
            for round in 0..4 {
                std::thread::sleep(std::time::Duration::from_millis(30));
                let entered = AtomicUsize::new(0);
                let t0 = std::time::Instant::now();
                pool.run(threads, &|_| {
                    entered.fetch_add(1, SeqCst);
                    while entered.load(SeqCst) < threads {
                        assert!(t0.elapsed().as_secs() < 20, "a worker did not wake up");
                        std::thread::yield_now();
                    }
                });
                assert_eq!(entered.load(SeqCst), threads, "{threads} threads, round {round}");
            }
        }
    }

    /// The caller sleeps while a worker runs a task longer than the spin budget, and is woken.
    #[test]
    fn caller_waits_for_a_long_task() {
        let pool = ThreadPool::new(2);
        for _ in 0..5 {
            let count = AtomicUsize::new(0);
            let caller = std::thread::current().id();
            pool.run(2, &|_| {
                if std::thread::current().id() != caller {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                count.fetch_add(1, SeqCst);
            });
            assert_eq!(count.load(SeqCst), 2);
        }
    }

    /// Panics from several tasks, on every thread count: re-raised once, others all ran.
    #[test]
    fn panics_under_load_keep_the_pool_usable() {
        for threads in [2, 3, 8] {
            let pool = ThreadPool::new(threads);
            for call in 0..200usize {
                let n = 2 + call % 37;
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                let r = catch_unwind(AssertUnwindSafe(|| {
                    pool.run(n, &|i| {
                        hits[i].fetch_add(1, SeqCst);
                        assert!(i % 5 != 1, "task fails");
                    });
                }));
                assert!(r.is_err());
                assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "{threads} threads, call {call}");
            }
        }
    }

    #[test]
    fn chunked_runs_cover_every_task_once() {
        let pool = ThreadPool::new(3);
        for (n, max) in [(10, 3), (7, 7), (100, 7), (8, 1)] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.run_chunked(n, max, &|i| {
                hits[i].fetch_add(1, SeqCst);
            });
            assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "n {n}, max {max}");
        }
    }

    #[test]
    fn drop_joins_idle_and_sleeping_workers() {
        for threads in [2, 8] {
            let pool = ThreadPool::new(threads);
            pool.run(4, &|_| {});
            drop(pool);
            let pool = ThreadPool::new(threads);
            pool.run(4, &|_| {});
            std::thread::sleep(std::time::Duration::from_millis(30));
            drop(pool);
        }
    }
}
