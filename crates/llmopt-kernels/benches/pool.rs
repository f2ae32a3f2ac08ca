//! Cost of one `ThreadPool::run` with trivial tasks: 2 threads, 2 and 16 tasks back to back (the
//! decode pattern: ~170 runs per token), a ping-pong of 1000 runs timed as a whole, and a
//! rendezvous of 2 tasks that each wait until both have started, so the worker must take part
//! (with trivial tasks the caller often finishes them all before the worker sees the job, which
//! then measures the caller alone). Each case runs on the current pool (`new`) and on a copy of
//! the pool before its hot path went lock-free (`old`: mutex to publish and to report, condvar
//! fallback), in the same process, one after the other.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use llmopt_kernels::ThreadPool;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

/// The pool as it was before the lock-free hot path (mutex-published jobs), kept for comparison.
#[allow(dead_code)]
mod old_pool {
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
}

trait Pool {
    fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync));
}

impl Pool for ThreadPool {
    fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        ThreadPool::run(self, n_tasks, f)
    }
}

impl Pool for old_pool::ThreadPool {
    fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        old_pool::ThreadPool::run(self, n_tasks, f)
    }
}

fn task(i: usize) {
    black_box(black_box(i) + 1);
}

fn bench(c: &mut Criterion) {
    let threads = 2;
    let new = ThreadPool::new(threads);
    let old = old_pool::ThreadPool::new(threads);
    let pools: [(&str, &dyn Pool); 2] = [("old", &old), ("new", &new)];

    let mut g = c.benchmark_group("pool_run_2threads");
    for n_tasks in [2usize, 16] {
        for (name, pool) in pools {
            g.bench_with_input(
                BenchmarkId::new(name, format!("tasks{n_tasks}")),
                &n_tasks,
                |b, &n| b.iter(|| pool.run(n, &task)),
            );
        }
    }
    g.finish();

    let mut g = c.benchmark_group("pool_rendezvous_2tasks");
    for (name, pool) in pools {
        g.bench_function(name, |b| {
            b.iter(|| {
                let started = AtomicUsize::new(0);
                pool.run(2, &|_| {
                    started.fetch_add(1, SeqCst);
                    // Yield now and then: when the other thread shares this CPU (a loaded
                    // machine), pure spinning would cost a scheduler tick (~4 ms) per run.
                    let mut spins = 0u32;
                    while started.load(SeqCst) < 2 {
                        spins += 1;
                        if spins == 1024 {
                            spins = 0;
                            std::thread::yield_now();
                        }
                        std::hint::spin_loop();
                    }
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("pool_pingpong_1000x2tasks");
    for (name, pool) in pools {
        g.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..1000 {
                    pool.run(2, &task);
                }
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
