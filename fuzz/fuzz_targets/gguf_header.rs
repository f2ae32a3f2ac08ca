//! The GGUF header parser on arbitrary bytes: it must return `Ok` or a `GgufError`, never panic,
//! overflow, or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = llmopt_formats::gguf::parse_header(data) {
        // What the parser accepted must be safe to use as the reader uses it.
        for t in &h.tensors {
            let end = t.offset.checked_add(t.n_bytes).expect("accepted tensor end overflows");
            assert!(end <= data.len() as u64, "accepted tensor '{}' ends past the buffer", t.name);
            assert!(
                t.offset >= h.data_offset,
                "accepted tensor '{}' starts before the data section",
                t.name
            );
        }
    }
});
