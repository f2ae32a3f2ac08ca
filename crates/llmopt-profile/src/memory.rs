//! The machine's memory bandwidth (copy and read, across the pool's threads), the thread pool's
//! cost per parallel region, and this process's peak resident memory: what the hardware allows,
//! to judge decode speed against.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use llmopt_kernels::{huge::HugeBytes, ThreadPool};

/// Raw pointer handed to the pool's tasks; each task touches its own disjoint slice.
#[derive(Clone, Copy)]
struct Shared(*mut u8);
// SAFETY: tasks use disjoint ranges, and `ThreadPool::run` returns only after all finish, while
// the buffers it points into are still borrowed by the caller.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    fn at(self, i: usize) -> *mut u8 {
        self.0.wrapping_add(i)
    }
}

/// Best-of-`reps` bandwidth of copying a `bytes`-byte buffer into another with all the pool's
/// threads (each its own slice), in bytes per second, counting bytes read plus bytes written
/// (STREAM's convention). Use a size well above the last-level cache (256 MiB is a good default).
/// The buffers are on huge pages where the OS gives them, as the repacked weights are.
pub fn copy_bandwidth(pool: &ThreadPool, bytes: usize, reps: usize) -> f64 {
    let mut bufs = HugeBytes::cut(&[bytes, bytes]);
    let (src, dst) = bufs.split_at_mut(1);
    let (src, dst) = (src[0].as_mut_slice(), dst[0].as_mut_slice());
    // Both are zeroed; writing every page faults them in before the timed copies.
    src.fill(1);
    dst.fill(0);
    let n_tasks = pool.n_threads();
    let chunk = bytes.div_ceil(n_tasks);
    let (s, d) = (Shared(src.as_ptr().cast_mut()), Shared(dst.as_mut_ptr()));
    let mut best = 0.0f64;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        pool.run(n_tasks, &|i| {
            let (a, b) = (i * chunk, ((i + 1) * chunk).min(bytes));
            if a < b {
                // SAFETY: `a..b` is in bounds of both buffers and belongs to this task alone;
                // `src` and `dst` are disjoint ranges.
                unsafe { std::ptr::copy_nonoverlapping(s.at(a).cast_const(), d.at(a), b - a) };
            }
        });
        best = best.max(2.0 * bytes as f64 / t.elapsed().as_secs_f64().max(1e-12));
    }
    std::hint::black_box(&dst);
    best
}

/// Best-of-`reps` bandwidth of reading a `bytes`-byte buffer (summing it as u64 words) with all
/// the pool's threads, in bytes per second: the access pattern of decode's weight streaming (on
/// huge pages where the OS gives them, as the repacked weights).
pub fn read_bandwidth(pool: &ThreadPool, bytes: usize, reps: usize) -> f64 {
    let mut buf = HugeBytes::cut(&[bytes / 8 * 8]).swap_remove(0);
    let words: &mut [u64] = bytemuck::cast_slice_mut(buf.as_mut_slice());
    words.fill(1);
    let words: &[u64] = words;
    let n_tasks = pool.n_threads();
    let chunk = words.len().div_ceil(n_tasks);
    let mut best = 0.0f64;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        pool.run(n_tasks, &|i| {
            let part = &words[(i * chunk).min(words.len())..((i + 1) * chunk).min(words.len())];
            // Four independent sums so the loop is bound by loads, not by one add chain.
            let mut acc = [0u64; 4];
            for c in part.chunks_exact(4) {
                for (a, v) in acc.iter_mut().zip(c) {
                    *a = a.wrapping_add(*v);
                }
            }
            std::hint::black_box(acc);
        });
        best = best.max((words.len() * 8) as f64 / t.elapsed().as_secs_f64().max(1e-12));
    }
    best
}

/// Seconds per parallel region of the pool when every thread takes part (each task waits until
/// all of the region's tasks have started, up to 1 ms), averaged over `runs` back-to-back regions
/// as in a decode step; `None` for a single-thread pool, which has no synchronization.
pub fn sync_cost(pool: &ThreadPool, runs: usize) -> Option<f64> {
    let n = pool.n_threads();
    if n < 2 || runs == 0 {
        return None;
    }
    let arrived = AtomicUsize::new(0);
    let started = Instant::now();
    for r in 0..runs {
        let target = (r + 1) * n;
        pool.run(n, &|_| {
            arrived.fetch_add(1, Ordering::AcqRel);
            let t = Instant::now();
            let mut spins = 0u32;
            while arrived.load(Ordering::Acquire) < target {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins & 1023 == 0 && t.elapsed() > Duration::from_millis(1) {
                    break;
                }
            }
        });
    }
    Some(started.elapsed().as_secs_f64() / runs as f64)
}

/// The `KEY:  N kB` line of a `/proc` file, in bytes; `None` where the file or line is missing.
fn proc_kb(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let rest = text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// This process's peak resident set size (Linux `VmHWM`), in bytes; `None` where unknown.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_kb("/proc/self/status", "VmHWM")
}

/// Bytes of this process's anonymous memory on transparent huge pages (Linux `AnonHugePages`
/// of `/proc/self/smaps_rollup`); `None` where unknown.
pub fn huge_page_bytes() -> Option<u64> {
    proc_kb("/proc/self/smaps_rollup", "AnonHugePages")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidths_are_positive_and_finite() {
        let pool = ThreadPool::new(2);
        for bw in [copy_bandwidth(&pool, 8 << 20, 2), read_bandwidth(&pool, 8 << 20, 2)] {
            assert!(bw.is_finite() && bw > 1e6, "{bw}");
        }
    }

    #[test]
    fn sync_cost_is_small_and_absent_for_one_thread() {
        assert_eq!(sync_cost(&ThreadPool::new(1), 100), None);
        let pool = ThreadPool::new(2);
        let before = pool.regions();
        let s = sync_cost(&pool, 200).unwrap();
        assert_eq!(pool.regions() - before, 200);
        // A region costs microseconds on an idle machine; on a loaded one a task gives up waiting
        // for the others after 1 ms, which bounds it (with room for the scheduler).
        assert!(s > 0.0 && s < 0.05, "{s}");
    }

    #[test]
    fn peak_rss_grows_with_a_touched_allocation() {
        let before = peak_rss_bytes().expect("Linux has /proc/self/status");
        let big = vec![7u8; 64 << 20];
        std::hint::black_box(&big);
        let after = peak_rss_bytes().unwrap();
        assert!(after >= before && after >= 64 << 20, "{before} -> {after}");
    }

    #[test]
    fn huge_page_bytes_reads_the_rollup_and_absent_keys_are_none() {
        // Linux always has the line (0 kB where THP is off), so only its value varies.
        assert!(huge_page_bytes().expect("Linux has /proc/self/smaps_rollup").is_multiple_of(1024));
        assert_eq!(proc_kb("/proc/self/status", "NoSuchKey"), None);
        assert_eq!(proc_kb("/proc/self/no-such-file", "VmHWM"), None);
    }
}
