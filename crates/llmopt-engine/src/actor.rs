//! The engine on its own thread: it owns the model's cache and thread pool and steps while there is
//! work; clients talk to it through a cloneable [`EngineHandle`] (submit, cancel, metrics, drain),
//! which is the engine's [`Generate`] for the server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use llmopt_api::{Generate, Limits};
use llmopt_kernels::ThreadPool;
use llmopt_model::Model;

use crate::{
    engine::{validate, Engine, EngineConfig, EngineMetrics},
    request::{Request, RequestError, RequestId, Sink},
};

enum Command {
    Submit {
        id: RequestId,
        request: Request,
        sink: Sink,
    },
    Cancel(RequestId),
    /// Finish what is admitted or queued, then stop.
    Drain,
}

struct Shared {
    tx: Mutex<mpsc::Sender<Command>>,
    next_id: AtomicU64,
    closing: AtomicBool,
    metrics: Mutex<EngineMetrics>,
    thread: Mutex<Option<JoinHandle<()>>>,
    context: usize,
    capacity: usize,
    vocab: usize,
}

/// A handle to an engine thread. Clones share the engine.
#[derive(Clone)]
pub struct EngineHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").field("context", &self.shared.context).finish()
    }
}

impl EngineHandle {
    /// Starts the engine thread over `model` with a pool of `threads` workers. Fails only when the
    /// operating system cannot start a thread.
    pub fn spawn(model: Arc<Model>, threads: usize, cfg: EngineConfig) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Command>();
        let context = model.config.context_length;
        let vocab = model.config.vocab_size;
        // The cache's capacity is what the engine builds: blocks rounded up.
        let bs = cfg.block_size.max(1);
        let capacity = cfg.kv_cache_tokens.div_ceil(bs).max(1) * bs;
        let shared = Arc::new(Shared {
            tx: Mutex::new(tx),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            metrics: Mutex::new(EngineMetrics::default()),
            thread: Mutex::new(None),
            context,
            capacity,
            vocab,
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new().name("llmopt-engine".into()).spawn(move || {
            let engine = Engine::new(model, ThreadPool::new(threads), cfg);
            run(engine, &rx, &worker);
        })?;
        *shared.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(Self { shared })
    }

    /// Validates and queues a request; events go to `sink` until a `Finished` per choice or an
    /// `Error`. Refused once draining.
    pub fn submit(&self, request: Request, sink: Sink) -> Result<RequestId, RequestError> {
        let s = &self.shared;
        if s.closing.load(Ordering::Acquire) {
            return Err(RequestError::Stopped);
        }
        validate(&request, s.context, s.capacity, s.vocab)?;
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        let tx = s.tx.lock().unwrap_or_else(|e| e.into_inner());
        tx.send(Command::Submit { id, request, sink }).map_err(|_| RequestError::Stopped)?;
        Ok(id)
    }

    /// Cancels a request (its sink gets `Finished { reason: Cancelled }` for open choices).
    pub fn cancel(&self, id: RequestId) {
        let tx = self.shared.tx.lock().unwrap_or_else(|e| e.into_inner());
        let _ = tx.send(Command::Cancel(id));
    }

    /// The engine's counters after its latest step.
    pub fn metrics(&self) -> EngineMetrics {
        self.shared.metrics.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The model's context length, the cache's capacity in tokens and the vocabulary size.
    pub fn limits(&self) -> Limits {
        let s = &self.shared;
        Limits { context: s.context, kv_capacity: s.capacity, vocab: s.vocab }
    }

    /// Stops taking requests, finishes the queued and running ones, and waits for the thread.
    pub fn drain(&self) {
        self.shared.closing.store(true, Ordering::Release);
        {
            let tx = self.shared.tx.lock().unwrap_or_else(|e| e.into_inner());
            let _ = tx.send(Command::Drain);
        }
        let thread = self.shared.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Generate for EngineHandle {
    fn submit(&self, request: Request, sink: Sink) -> Result<RequestId, RequestError> {
        EngineHandle::submit(self, request, sink)
    }

    fn cancel(&self, id: RequestId) {
        EngineHandle::cancel(self, id);
    }

    fn metrics(&self) -> EngineMetrics {
        EngineHandle::metrics(self)
    }

    fn limits(&self) -> Limits {
        EngineHandle::limits(self)
    }

    fn drain(&self) {
        EngineHandle::drain(self);
    }
}

fn apply(engine: &mut Engine, cmd: Command, draining: &mut bool) {
    match cmd {
        Command::Submit { id, request, sink } => {
            if let Err(e) = engine.submit(id, request, sink.clone()) {
                sink.send(crate::Event::Error { message: e.to_string() });
            }
        }
        Command::Cancel(id) => engine.cancel(id),
        Command::Drain => *draining = true,
    }
}

fn run(mut engine: Engine, rx: &mpsc::Receiver<Command>, shared: &Shared) {
    let mut draining = false;
    loop {
        if engine.has_work() {
            while let Ok(cmd) = rx.try_recv() {
                apply(&mut engine, cmd, &mut draining);
            }
        } else if draining {
            break;
        } else {
            match rx.recv() {
                Ok(cmd) => apply(&mut engine, cmd, &mut draining),
                Err(_) => break,
            }
            continue;
        }
        if !engine.step() {
            // Work that cannot move now (waiting for blocks): wait for a command a moment.
            if let Ok(cmd) = rx.recv_timeout(std::time::Duration::from_millis(2)) {
                apply(&mut engine, cmd, &mut draining);
            }
        }
        *shared.metrics.lock().unwrap_or_else(|e| e.into_inner()) = engine.metrics();
    }
    *shared.metrics.lock().unwrap_or_else(|e| e.into_inner()) = engine.metrics();
}
