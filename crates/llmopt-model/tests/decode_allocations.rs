//! The decode loop allocates nothing: after a warm-up step, further single-token forward calls
//! (on every thread of the pool) make no heap allocation, counted by a wrapping global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, SeqInput, Workspace};

/// The system allocator, counting allocations and reallocations.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn decode_allocations(name: &str) -> usize {
    let file = Arc::new(GgufFile::open(llmopt_testdata::model(name)).unwrap());
    let m = Model::from_gguf(file).unwrap();
    let pool = ThreadPool::new(2);
    let mut kv = KvCache::new(&m.config, 256, 16);
    let mut ws = Workspace::new();
    let s = kv.add_sequence();
    let prompt: Vec<u32> = (0..20).map(|i| (i * 131 + 7) % m.config.vocab_size as u32).collect();
    let step = |kv: &mut KvCache, ws: &mut Workspace, t: &u32| {
        let input = SeqInput { seq: s, tokens: std::slice::from_ref(t), logits: Logits::Last };
        m.forward(&pool, &[input], kv, ws, None).unwrap();
    };
    m.forward(
        &pool,
        &[SeqInput { seq: s, tokens: &prompt, logits: Logits::Last }],
        &mut kv,
        &mut ws,
        None,
    )
    .unwrap();
    // Warm-up: the first decode step may size buffers for one token.
    step(&mut kv, &mut ws, &prompt[0]);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for t in &prompt {
        step(&mut kv, &mut ws, t);
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn decode_steps_allocate_nothing() {
    for name in [llmopt_testdata::SMOLLM2, llmopt_testdata::GEMMA3, llmopt_testdata::QWEN05] {
        assert_eq!(decode_allocations(name), 0, "{name}: allocations in 20 decode steps");
    }
}
