//! Memory on 2 MiB pages (Linux transparent huge pages) for repacked weights, one mapping per model
//! cut into disjoint 64-byte aligned ranges, one per weight; and for the bandwidth probes that
//! judge decode against the machine (so both read memory the same way).
//!
//! Decode reads every weight byte once per token. On 4 KiB pages that is a TLB walk per page and a
//! hardware prefetcher that stops at each page boundary; on 2 MiB pages, neither. The OS may still
//! give small pages (THP set to `never`, no free huge page): the advice is only advice, and the
//! memory works the same either way.

use std::sync::Arc;

use memmap2::MmapMut;

/// Huge page size the mapping is aligned to.
const HUGE: usize = 2 << 20;

/// Alignment of every range (a cache line).
const ALIGN: usize = 64;

/// The shared memory: kept alive by every range cut from it.
struct Region {
    /// Held for its lifetime; all access goes through `base`.
    _mem: Memory,
    /// Start of the usable part (2 MiB aligned in a mapping, 64-byte aligned on the heap).
    base: *mut u8,
}

/// An anonymous mapping, or heap memory where the OS refused one.
enum Memory {
    Map(#[allow(dead_code)] MmapMut),
    Heap(#[allow(dead_code)] Vec<u8>),
}

// SAFETY: `Region` only keeps the mapping alive; the bytes behind `base` are reached through
// `HugeBytes`, each of which owns a disjoint range (see there).
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

/// A range of a shared mapping that no other `HugeBytes` overlaps (one weight's bytes, say).
/// Zeroed when cut.
pub struct HugeBytes {
    region: Arc<Region>,
    offset: usize,
    len: usize,
}

// SAFETY: the range is disjoint from every other `HugeBytes` of the region and the type is not
// `Clone`, so shared access goes through `&self` (reads) and writes through `&mut self` only.
unsafe impl Send for HugeBytes {}
// SAFETY: as above.
unsafe impl Sync for HugeBytes {}

impl HugeBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `offset..offset + len` lies in the mapping (checked by `cut`), which `region`
        // keeps alive; no `&mut` to this range can exist while `&self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.region.base.add(self.offset), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and this range belongs to `self` alone.
        unsafe { std::slice::from_raw_parts_mut(self.region.base.add(self.offset), self.len) }
    }

    /// Ranges of `lens` bytes each, cut in order from one new anonymous mapping advised to use
    /// huge pages (each range 64-byte aligned, the first 2 MiB aligned): consecutive weights stay
    /// consecutive in memory, as decode reads them. Under 2 MiB in all, or where the OS refuses
    /// the mapping, from the heap instead (as `Vec`, which also aborts when that fails).
    ///
    /// # Panics
    /// If the sizes add up past `usize` (as `Vec::with_capacity` would).
    pub fn cut(lens: &[usize]) -> Vec<HugeBytes> {
        let mut offsets = Vec::with_capacity(lens.len());
        let mut total = 0usize;
        for &len in lens {
            offsets.push(total);
            total = total.checked_add(len.next_multiple_of(ALIGN)).expect("sizes overflow usize");
        }
        // Room to start at a 2 MiB boundary wherever the OS places the mapping. Less than one
        // huge page in all gains nothing from one (and one would cost 2 MiB): the heap then.
        let used = total.max(1).next_multiple_of(HUGE);
        let map = if total >= HUGE { MmapMut::map_anon(used + HUGE).ok() } else { None };
        let (mem, base) = match map {
            Some(mut map) => {
                let start = map.as_ptr().align_offset(HUGE);
                #[cfg(target_os = "linux")]
                {
                    // Only advice: the memory is the same without it.
                    let _ = map.advise_range(memmap2::Advice::HugePage, start, used);
                }
                // SAFETY: `start < HUGE` and the mapping holds `used + HUGE` bytes.
                let base = unsafe { map.as_mut_ptr().add(start) };
                (Memory::Map(map), base)
            }
            None => {
                let mut heap = vec![0u8; total + ALIGN];
                let start = heap.as_ptr().align_offset(ALIGN);
                // SAFETY: `start < ALIGN` and the vector holds `total + ALIGN` bytes; its heap
                // buffer does not move when the vector is moved into `Memory`.
                let base = unsafe { heap.as_mut_ptr().add(start) };
                (Memory::Heap(heap), base)
            }
        };
        let region = Arc::new(Region { _mem: mem, base });
        lens.iter()
            .zip(offsets)
            .map(|(&len, offset)| HugeBytes { region: Arc::clone(&region), offset, len })
            .collect()
    }
}

impl AsRef<[u8]> for HugeBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for HugeBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HugeBytes({} bytes at {:#x})", self.len, self.as_slice().as_ptr() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_zeroed_aligned_disjoint_and_keep_their_bytes() {
        let lens = [0usize, 1, 63, 64, 65, 3 << 20, 7];
        let mut parts = HugeBytes::cut(&lens);
        assert_eq!(parts[0].as_slice().as_ptr() as usize % HUGE, 0, "a mapping, 2 MiB aligned");
        for (i, (p, &len)) in parts.iter_mut().zip(&lens).enumerate() {
            assert_eq!(p.as_slice().len(), len);
            assert_eq!(p.as_slice().as_ptr() as usize % ALIGN, 0);
            assert!(p.as_slice().iter().all(|&b| b == 0));
            p.as_mut_slice().fill(i as u8 + 1);
        }
        for w in parts.windows(2) {
            let (a, b) = (w[0].as_slice(), w[1].as_slice());
            assert!(a.as_ptr() as usize + a.len() <= b.as_ptr() as usize);
        }
        // Small totals come from the heap, still aligned and zeroed.
        let mut small = HugeBytes::cut(&[100, 5]);
        for p in &mut small {
            assert_eq!(p.as_slice().as_ptr() as usize % ALIGN, 0);
            assert!(p.as_slice().iter().all(|&b| b == 0));
            p.as_mut_slice().fill(9);
        }
        assert!(small[0].as_slice().iter().chain(small[1].as_slice()).all(|&b| b == 9));
        // The mapping outlives the ranges dropped before it.
        let last = parts.pop().unwrap();
        drop(parts);
        assert!(last.as_slice().iter().all(|&b| b == lens.len() as u8));
    }
}
