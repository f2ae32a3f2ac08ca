//! Prefix caching: full KV blocks kept after their sequence ends, found again by a hash chained over
//! the tokens of every block up to them, shared by reference count, evicted least recently used.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use llmopt_model::{BlockId, KvCache};

#[derive(Debug)]
struct Entry {
    block: BlockId,
    /// The tokens the block holds (checked on a hit, so a hash collision is never a wrong hit).
    tokens: Box<[u32]>,
    /// Hash of the chain before this block (0 for the first block).
    parent: u64,
    /// Blocks from the start of the sequence (1 for the first).
    depth: usize,
    last_used: u64,
}

/// Cached full blocks by chain hash. The cache holds one reference on each block it knows.
#[derive(Debug)]
pub struct PrefixCache {
    block_size: usize,
    map: HashMap<u64, Entry>,
    tick: u64,
    /// Prompt tokens looked up, and how many of them were found.
    pub queried_tokens: u64,
    pub hit_tokens: u64,
}

/// The hash of a block's tokens chained to the hash of everything before it.
fn chain(parent: u64, tokens: &[u32]) -> u64 {
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    // 0 marks "no parent"; keep it out of the hash space.
    h.finish().max(1)
}

impl PrefixCache {
    pub fn new(block_size: usize) -> Self {
        Self { block_size, map: HashMap::new(), tick: 0, queried_tokens: 0, hit_tokens: 0 }
    }

    /// Blocks the cache holds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The cached blocks that hold the longest prefix of `tokens` in whole blocks, at most
    /// `max_blocks` of them, marked as just used.
    pub fn lookup(&mut self, tokens: &[u32], max_blocks: usize) -> Vec<BlockId> {
        self.tick += 1;
        self.queried_tokens += tokens.len() as u64;
        let mut out = Vec::new();
        let mut parent = 0;
        for block_tokens in tokens.chunks_exact(self.block_size).take(max_blocks) {
            let h = chain(parent, block_tokens);
            match self.map.get_mut(&h) {
                Some(e) if e.parent == parent && *e.tokens == *block_tokens => {
                    e.last_used = self.tick;
                    out.push(e.block);
                    parent = h;
                }
                _ => break,
            }
        }
        self.hit_tokens += (out.len() * self.block_size) as u64;
        out
    }

    /// Registers the full blocks of a sequence whose first `tokens.len()` tokens sit in `table`:
    /// each block not cached yet is retained in `kv` and remembered. Blocks already cached (the
    /// same tokens after the same prefix) are left as they are.
    pub fn insert(&mut self, kv: &mut KvCache, tokens: &[u32], table: &[BlockId]) {
        self.tick += 1;
        let mut parent = 0;
        for (i, (block_tokens, &block)) in
            tokens.chunks_exact(self.block_size).zip(table).enumerate()
        {
            let h = chain(parent, block_tokens);
            match self.map.get_mut(&h) {
                Some(e) => e.last_used = self.tick,
                None => {
                    if kv.retain_block(block) {
                        self.map.insert(
                            h,
                            Entry {
                                block,
                                tokens: block_tokens.into(),
                                parent,
                                depth: i + 1,
                                last_used: self.tick,
                            },
                        );
                    }
                }
            }
            parent = h;
        }
    }

    /// Frees up to `want` blocks that nothing but the cache holds, least recently used first (the
    /// deepest first among equals, so a chain is cut from its end). Returns how many were freed.
    pub fn evict(&mut self, kv: &mut KvCache, want: usize) -> usize {
        if want == 0 {
            return 0;
        }
        let mut idle: Vec<(u64, usize, u64)> = self
            .map
            .iter()
            .filter(|(_, e)| kv.block_refs(e.block) == 1)
            .map(|(&h, e)| (e.last_used, usize::MAX - e.depth, h))
            .collect();
        idle.sort_unstable();
        let mut freed = 0;
        for (_, _, h) in idle.into_iter().take(want) {
            if let Some(e) = self.map.remove(&h) {
                kv.release_block(e.block);
                freed += 1;
            }
        }
        freed
    }

    /// Drops every entry (releasing the cache's holds).
    pub fn clear(&mut self, kv: &mut KvCache) {
        for (_, e) in self.map.drain() {
            kv.release_block(e.block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmopt_model::{ArchSpec, ModelConfig};

    fn kv(blocks: usize) -> KvCache {
        let cfg = ModelConfig {
            arch: ArchSpec::by_name("llama").unwrap(),
            n_layer: 1,
            d_model: 8,
            n_head: 2,
            n_kv_head: 1,
            head_dim: 4,
            ffn_dim: 16,
            vocab_size: 10,
            context_length: 256,
            rms_eps: 1e-5,
            rope_base: 10_000.0,
            rope_freq_scale: 1.0,
            rope_dim: 4,
            sliding_window: None,
            attn_scale: 0.5,
            kv_type: Default::default(),
            rotations: Default::default(),
        };
        KvCache::new(&cfg, blocks * 4, 4)
    }

    /// A sequence holding `n` tokens (blocks reserved as the forward would).
    fn seq(kv: &mut KvCache, n: usize) -> llmopt_model::SeqId {
        let s = kv.add_sequence();
        kv.reserve(s, n).unwrap();
        s
    }

    #[test]
    fn hits_follow_the_chain_and_stop_at_the_first_difference() {
        let mut kv = kv(8);
        let mut pc = PrefixCache::new(4);
        let a: Vec<u32> = (0..10).collect();
        let sa = seq(&mut kv, a.len());
        let table = kv.block_table(sa).unwrap().to_vec();
        pc.insert(&mut kv, &a, &table);
        assert_eq!(pc.len(), 2, "two full blocks; the partial third is not cached");
        assert_eq!(kv.block_refs(table[0]), 2);
        kv.remove_sequence(sa);
        assert_eq!(kv.free_blocks(), 6);

        assert_eq!(pc.lookup(&a, 8), table[..2]);
        assert_eq!(pc.lookup(&a, 1), table[..1]);
        // The same second block after a different first one is a miss from the first block on.
        let mut b = a.clone();
        b[0] = 99;
        assert!(pc.lookup(&b, 8).is_empty());
        // A difference in the second block keeps the first.
        let mut c = a.clone();
        c[5] = 99;
        assert_eq!(pc.lookup(&c, 8), table[..1]);
        assert_eq!(pc.hit_tokens, 8 + 4 + 4);

        // Eviction frees only blocks nobody else holds, deepest first among equals.
        let user = kv.add_sequence_on(&table[..1], 4).unwrap();
        assert_eq!(pc.evict(&mut kv, 5), 1, "block 0 is in use");
        assert_eq!(pc.lookup(&a, 8), table[..1]);
        kv.remove_sequence(user);
        assert_eq!(pc.evict(&mut kv, 5), 1);
        assert!(pc.is_empty());
        assert_eq!(kv.free_blocks(), 8);
    }

    #[test]
    fn least_recently_used_goes_first_and_clear_releases_all() {
        let mut kv = kv(8);
        let mut pc = PrefixCache::new(4);
        let (x, y): (Vec<u32>, Vec<u32>) = ((0..4).collect(), (10..14).collect());
        for t in [&x, &y] {
            let s = seq(&mut kv, 4);
            let table = kv.block_table(s).unwrap().to_vec();
            pc.insert(&mut kv, t, &table);
            kv.remove_sequence(s);
        }
        pc.lookup(&x, 1); // x is now the most recent
        assert_eq!(pc.evict(&mut kv, 1), 1);
        assert_eq!(pc.lookup(&x, 1).len(), 1, "x survived");
        assert!(pc.lookup(&y, 1).is_empty(), "y was evicted");
        pc.clear(&mut kv);
        assert_eq!(kv.free_blocks(), 8);
        // A free block cannot be cached.
        pc.insert(&mut kv, &x, &[0]);
        assert!(pc.is_empty());
    }
}
