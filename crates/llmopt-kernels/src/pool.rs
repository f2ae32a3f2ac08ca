//! A persistent thread pool: workers are spawned once, and each [`ThreadPool::run`] hands them a
//! borrowed closure and a task count.
//!
//! The calling thread works too, so `ThreadPool::new(n)` spawns `n - 1` workers and
//! `ThreadPool::new(1)` runs everything inline. Workers spin briefly on an atomic generation
//! counter before sleeping on a condvar, so back-to-back calls (one per Linear in a decode step)
//! do not pay a futex wake-up each. Tasks are claimed from an atomic counter, so uneven tasks
//! balance themselves.
//!
//! One caller at a time: `run` takes `&self` (the pool is `Send + Sync` so it can be shared), but
//! concurrent `run`s from two threads are serialized by an internal lock, not interleaved.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// How many times an idle worker polls for new work before it sleeps.
const SPIN_ITERS: u32 = 1 << 14;

type TaskFn = dyn Fn(usize) + Sync;

/// A job as the workers see it: the closure with its lifetime erased, and the task count.
#[derive(Clone, Copy)]
struct Job {
    f: *const TaskFn,
    n_tasks: usize,
}

struct State {
    generation: u64,
    job: Option<Job>,
    sleepers: usize,
    shutdown: bool,
}

// SAFETY: `Job::f` points at a `Sync` closure that `run` keeps alive until no worker can reach
// it any more (see `run`); the raw pointer itself is only copied between threads.
unsafe impl Send for State {}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    done: Condvar,
    generation: AtomicU64,
    next_task: AtomicUsize,
    active: AtomicUsize,
    panicked: AtomicBool,
    /// Serializes callers of `run`.
    caller: Mutex<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claim and run tasks until none are left; panics are recorded, not propagated.
    fn work(&self, job: Job) {
        // SAFETY: the closure outlives every claim of a task of its job (see `run`).
        let f = unsafe { &*job.f };
        loop {
            let i = self.next_task.fetch_add(1, SeqCst);
            if i >= job.n_tasks {
                break;
            }
            if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
                self.panicked.store(true, SeqCst);
            }
        }
    }
}

/// Persistent worker threads; see the module docs.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
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
            state: Mutex::new(State { generation: 0, job: None, sleepers: 0, shutdown: false }),
            wake: Condvar::new(),
            done: Condvar::new(),
            generation: AtomicU64::new(0),
            next_task: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
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
        ThreadPool { shared, workers, n_threads }
    }

    /// Threads that run tasks, the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Run `f(i)` for every `i in 0..n_tasks` across the workers and the caller; returns when all
    /// are done. A panic in any task is re-raised here after the others finish.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if self.workers.is_empty() || n_tasks == 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        let _one_caller = self.shared.caller.lock().unwrap_or_else(|e| e.into_inner());
        let sh = &*self.shared;
        // Lifetime erasure: the pointer is published only inside `state.job`, and `run` does
        // not return before it has taken `job` back out under the lock with `active == 0`,
        // i.e. after every worker that picked the job up has finished with it.
        let f_static: *const TaskFn =
            // SAFETY: only the lifetime changes (same fat-pointer layout); see above.
            unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const TaskFn>(f) };
        let job = Job { f: f_static, n_tasks };
        {
            let mut st = sh.lock();
            sh.next_task.store(0, SeqCst);
            sh.panicked.store(false, SeqCst);
            st.job = Some(job);
            st.generation += 1;
            sh.generation.store(st.generation, SeqCst);
            if st.sleepers > 0 {
                sh.wake.notify_all();
            }
        }
        sh.work(job);
        // Wait for workers still inside tasks: spin first, then sleep.
        let mut spins = 0;
        while sh.active.load(SeqCst) > 0 && spins < SPIN_ITERS {
            std::hint::spin_loop();
            spins += 1;
        }
        let mut st = sh.lock();
        while sh.active.load(SeqCst) > 0 {
            st = sh.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.job = None;
        drop(st);
        if sh.panicked.load(SeqCst) {
            resume_unwind(Box::new("a ThreadPool task panicked"));
        }
    }
}

fn worker_loop(sh: &Shared) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0;
        while sh.generation.load(SeqCst) == seen && spins < SPIN_ITERS {
            std::hint::spin_loop();
            spins += 1;
        }
        let mut st = sh.lock();
        while st.generation == seen && !st.shutdown {
            st.sleepers += 1;
            st = sh.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            st.sleepers -= 1;
        }
        if st.shutdown {
            return;
        }
        seen = st.generation;
        let Some(job) = st.job else { continue };
        sh.active.fetch_add(1, SeqCst);
        drop(st);
        sh.work(job);
        if sh.active.fetch_sub(1, SeqCst) == 1 {
            // Take the lock so the caller cannot miss this between its check and its wait.
            let _st = sh.lock();
            sh.done.notify_all();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
