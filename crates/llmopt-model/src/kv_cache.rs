//! The paged KV cache: fixed-size blocks of token slots shared by all sequences, each sequence
//! owning a block table. Keys and values are rows of the cache's [`KvType`] (f16 by default, as
//! llama.cpp; Q8_0 or Q4_0 quantized as each row is written, as its `-ctk`/`-ctv`).
//! A sequence can be forked: the child shares the parent's blocks (reference counted), and a shared
//! block is copied the first time either side writes into it (copy-on-write).

use llmopt_kernels::{huge::HugeBytes, Isa, Kernels, QuantizeFn};

use crate::{attention::KvLayer, config::ModelConfig, KvType, ModelError};

/// Identifies a sequence in a [`KvCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(u32);

#[derive(Clone, Debug, Default)]
struct SeqState {
    blocks: Vec<u32>,
    len: usize,
}

/// Keys and values of every layer for all sequences, in blocks of `block_size` token slots.
#[derive(Debug)]
pub struct KvCache {
    block_size: usize,
    kv_dim: usize,
    kv_type: KvType,
    /// Bytes of one token's keys (or values) of one layer: `kv_dim` values of `kv_type`.
    row: usize,
    /// Encodes a row into `kv_type`, as llama.cpp's CPU `set_rows` does (its `from_float`).
    quantize: QuantizeFn,
    n_blocks: usize,
    /// Per layer: `n_blocks * block_size * row` bytes (64-byte aligned), all layers in one
    /// mapping on 2 MiB pages: attention reads a sequence's blocks wherever they lie, and on
    /// 4 KiB pages that was a TLB walk and a prefetcher restart at every page.
    k: Vec<HugeBytes>,
    v: Vec<HugeBytes>,
    free: Vec<u32>,
    /// Block tables holding each block; a block is free when this is 0.
    refs: Vec<u32>,
    seqs: Vec<Option<SeqState>>,
}

/// Index of a block of token slots.
pub type BlockId = u32;

/// Default number of token slots per block.
pub const DEFAULT_BLOCK_SIZE: usize = 16;

impl KvCache {
    /// A cache with room for `capacity_tokens` token slots in blocks of `block_size`, holding
    /// rows of `cfg.kv_type`.
    ///
    /// # Panics
    /// If a head is not whole blocks of `cfg.kv_type` (`ModelConfig::with_kv_type` refuses that).
    pub fn new(cfg: &ModelConfig, capacity_tokens: usize, block_size: usize) -> Self {
        let block_size = block_size.max(1);
        let n_blocks = capacity_tokens.div_ceil(block_size).max(1);
        let kv_dim = cfg.kv_dim();
        let kv_type = cfg.kv_type;
        assert!(
            cfg.head_dim.is_multiple_of(kv_type.block_len()),
            "{kv_type} KV rows need whole blocks"
        );
        let row = kv_type.row_bytes(kv_dim);
        let per_layer = n_blocks * block_size * row;
        let mut layers = HugeBytes::cut(&vec![per_layer; 2 * cfg.n_layer]);
        let v = layers.split_off(cfg.n_layer);
        let kernels = Kernels::get(Isa::best()).expect("the best ISA is available");
        Self {
            block_size,
            kv_dim,
            kv_type,
            row,
            quantize: kernels.quantize(kv_type.ggml()).expect("every KV type has an encoder"),
            n_blocks,
            k: layers,
            v,
            free: (0..n_blocks as u32).rev().collect(),
            refs: vec![0; n_blocks],
            seqs: Vec::new(),
        }
    }

    /// Starts an empty sequence.
    pub fn add_sequence(&mut self) -> SeqId {
        let slot = self.seqs.iter().position(Option::is_none).unwrap_or_else(|| {
            self.seqs.push(None);
            self.seqs.len() - 1
        });
        // Room for every block up front, so growing a sequence never allocates.
        self.seqs[slot] = Some(SeqState { blocks: Vec::with_capacity(self.n_blocks), len: 0 });
        SeqId(slot as u32)
    }

    /// Starts a sequence whose first `len` tokens are those of `parent`, sharing its blocks: no
    /// copy until one of the two writes into a shared block (then that block alone is copied).
    pub fn fork_sequence(&mut self, parent: SeqId, len: usize) -> Result<SeqId, ModelError> {
        let have = self.state(parent)?.len;
        if len > have {
            return Err(ModelError::ForkBeyondEnd { len, have });
        }
        let shared = len.div_ceil(self.block_size);
        let child = self.add_sequence();
        let blocks: Vec<u32> = self.state(parent)?.blocks[..shared].to_vec();
        for &b in &blocks {
            self.refs[b as usize] += 1;
        }
        let state =
            self.seqs[child.0 as usize].as_mut().ok_or(ModelError::UnknownSequence(child.0))?;
        state.blocks.extend_from_slice(&blocks);
        state.len = len;
        Ok(child)
    }

    /// Starts a sequence of `len` tokens on existing `blocks` (held elsewhere, e.g. by a prefix
    /// cache), sharing them as [`KvCache::fork_sequence`] does. `blocks` must be exactly the
    /// blocks `len` tokens fill, each held already.
    pub fn add_sequence_on(&mut self, blocks: &[BlockId], len: usize) -> Result<SeqId, ModelError> {
        if len.div_ceil(self.block_size) != blocks.len()
            || blocks.iter().any(|&b| self.refs.get(b as usize).is_none_or(|&r| r == 0))
        {
            return Err(ModelError::BadBlocks { len, blocks: blocks.len() });
        }
        let id = self.add_sequence();
        for &b in blocks {
            self.refs[b as usize] += 1;
        }
        let state = self.seqs[id.0 as usize].as_mut().ok_or(ModelError::UnknownSequence(id.0))?;
        state.blocks.extend_from_slice(blocks);
        state.len = len;
        Ok(id)
    }

    /// The blocks holding a sequence's tokens, in position order.
    pub fn block_table(&self, id: SeqId) -> Result<&[BlockId], ModelError> {
        Ok(&self.state(id)?.blocks)
    }

    /// How many holders (block tables and [`KvCache::retain_block`] calls) a block has.
    pub fn block_refs(&self, block: BlockId) -> u32 {
        self.refs.get(block as usize).copied().unwrap_or(0)
    }

    /// Adds a holder outside any sequence to a block that is held already (a prefix cache keeps
    /// finished sequences' blocks this way); false when the block is free or out of range.
    pub fn retain_block(&mut self, block: BlockId) -> bool {
        match self.refs.get_mut(block as usize) {
            Some(r) if *r > 0 => {
                *r += 1;
                true
            }
            _ => false,
        }
    }

    /// Drops a hold taken by [`KvCache::retain_block`]; the block is free when none is left.
    pub fn release_block(&mut self, block: BlockId) {
        if self.refs.get(block as usize).is_some_and(|&r| r > 0) {
            self.release(block);
        }
    }

    /// Blocks free for new tokens.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Token slots per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks growing sequence `id` to `new_len` tokens would take from the free list (new
    /// blocks, plus one when the first new token lands in a shared, partly filled block).
    pub fn blocks_needed(&self, id: SeqId, new_len: usize) -> Result<usize, ModelError> {
        let s = self.state(id)?;
        let bs = self.block_size;
        let cow =
            new_len > s.len && s.len % bs != 0 && self.refs[s.blocks[s.len / bs] as usize] > 1;
        Ok(new_len.div_ceil(bs).saturating_sub(s.blocks.len()) + usize::from(cow))
    }

    /// Drops one table's hold on a block, returning it to the free list when none is left.
    fn release(&mut self, block: u32) {
        let r = &mut self.refs[block as usize];
        *r -= 1;
        if *r == 0 {
            self.free.push(block);
        }
    }

    /// Ends a sequence and returns its blocks to the free list (shared ones when no other
    /// sequence holds them).
    pub fn remove_sequence(&mut self, id: SeqId) {
        if let Some(state) = self.seqs.get_mut(id.0 as usize).and_then(Option::take) {
            for &b in state.blocks.iter().rev() {
                self.release(b);
            }
        }
    }

    fn state(&self, id: SeqId) -> Result<&SeqState, ModelError> {
        self.seqs
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(ModelError::UnknownSequence(id.0))
    }

    /// Tokens stored for a sequence.
    pub fn seq_len(&self, id: SeqId) -> Result<usize, ModelError> {
        Ok(self.state(id)?.len)
    }

    /// Forgets the tokens of a sequence from position `len` on, freeing whole blocks past it.
    pub fn truncate(&mut self, id: SeqId, len: usize) -> Result<(), ModelError> {
        let bs = self.block_size;
        let state = self
            .seqs
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(ModelError::UnknownSequence(id.0))?;
        if len < state.len {
            state.len = len;
            let keep = len.div_ceil(bs);
            let dropped: Vec<u32> = state.blocks.drain(keep..).rev().collect();
            for b in dropped {
                self.release(b);
            }
        }
        Ok(())
    }

    /// Total token slots.
    pub fn capacity(&self) -> usize {
        self.n_blocks * self.block_size
    }

    /// Token slots not held by any sequence.
    pub fn free_slots(&self) -> usize {
        self.free.len() * self.block_size
    }

    /// Bytes of key and value storage for one token across all layers.
    pub fn bytes_per_token(&self) -> usize {
        2 * self.k.len() * self.row
    }

    /// What [`KvCache::bytes_per_token`] is for a model (with its `kv_type`), without building a
    /// cache.
    pub fn token_bytes(cfg: &ModelConfig) -> usize {
        2 * cfg.n_layer * cfg.kv_type.row_bytes(cfg.kv_dim())
    }

    /// The element type of the keys and values.
    pub fn kv_type(&self) -> KvType {
        self.kv_type
    }

    /// Grows a sequence to `new_len` tokens, taking blocks from the free list; all or nothing. A
    /// shared block the new tokens would be written into is first copied (copy-on-write).
    pub fn reserve(&mut self, id: SeqId, new_len: usize) -> Result<(), ModelError> {
        let bs = self.block_size;
        let (len, have) = {
            let s = self.state(id)?;
            (s.len, s.blocks.len())
        };
        // The block the first new token lands in, when it is partly filled and shared.
        let cow = (new_len > len && len % bs != 0)
            .then(|| self.state(id).map(|s| s.blocks[len / bs]))
            .transpose()?
            .filter(|&b| self.refs[b as usize] > 1);
        let need = new_len.div_ceil(bs).saturating_sub(have) + usize::from(cow.is_some());
        if need > self.free.len() {
            return Err(ModelError::KvCacheFull {
                needed_tokens: new_len,
                capacity: self.capacity(),
            });
        }
        if let Some(old) = cow {
            let new = self.free.pop().expect("counted in need");
            self.refs[new as usize] = 1;
            self.copy_block(old, new);
            self.release(old);
            let state =
                self.seqs[id.0 as usize].as_mut().ok_or(ModelError::UnknownSequence(id.0))?;
            state.blocks[len / bs] = new;
        }
        let state = self.seqs[id.0 as usize].as_mut().ok_or(ModelError::UnknownSequence(id.0))?;
        // `blocks` has room for every block (see `add_sequence`): no allocation here.
        for _ in 0..new_len.div_ceil(bs).saturating_sub(have) {
            let b = self.free.pop().expect("counted in need");
            self.refs[b as usize] = 1;
            state.blocks.push(b);
        }
        state.len = state.len.max(new_len);
        Ok(())
    }

    /// Copies every layer's keys and values of block `from` into block `to`.
    fn copy_block(&mut self, from: u32, to: u32) {
        let n = self.block_size * self.row;
        let (from, to) = (from as usize * n, to as usize * n);
        for layer in self.k.iter_mut().chain(self.v.iter_mut()) {
            layer.as_mut_slice().copy_within(from..from + n, to);
        }
    }

    /// Byte offset of token `pos` of `id`'s row in a layer's storage (pos < reserved len).
    pub(crate) fn slot_offset(&self, id: SeqId, pos: usize) -> usize {
        let state = self.seqs[id.0 as usize].as_ref().expect("sequence checked by reserve");
        let block = state.blocks[pos / self.block_size] as usize;
        (block * self.block_size + pos % self.block_size) * self.row
    }

    /// Slot offsets of positions `0..len` of a sequence, written into `out`.
    pub(crate) fn slot_offsets(&self, id: SeqId, len: usize, out: &mut Vec<usize>) {
        out.clear();
        out.extend((0..len).map(|p| self.slot_offset(id, p)));
    }

    /// Stores one token's key and value rows (`kv_dim` wide) at byte `offset` in layer `il`,
    /// encoded into the cache's type.
    pub(crate) fn write(&mut self, il: usize, offset: usize, k: &[f32], v: &[f32]) {
        let (kd, row) = (self.kv_dim, self.row);
        let dst_k = &mut self.k[il].as_mut_slice()[offset..offset + row];
        (self.quantize)(&k[..kd], dst_k);
        let dst_v = &mut self.v[il].as_mut_slice()[offset..offset + row];
        (self.quantize)(&v[..kd], dst_v);
    }

    /// Key and value storage of layer `il`.
    pub(crate) fn layer(&self, il: usize) -> KvLayer<'_> {
        KvLayer { ty: self.kv_type, k: self.k[il].as_slice(), v: self.v[il].as_slice() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::ArchSpec;

    /// The decoded key and value rows at byte `off` of layer `il`.
    fn rows(kv: &KvCache, il: usize, off: usize) -> (Vec<f32>, Vec<f32>) {
        let l = kv.layer(il);
        let dec = |b: &[u8]| {
            let mut out = vec![0f32; kv.kv_dim];
            l.ty.ggml().to_f32(&b[off..off + kv.row], &mut out).unwrap();
            out
        };
        (dec(l.k), dec(l.v))
    }

    fn cfg() -> ModelConfig {
        ModelConfig {
            arch: ArchSpec::by_name("llama").unwrap(),
            n_layer: 2,
            d_model: 8,
            n_head: 2,
            n_kv_head: 1,
            head_dim: 4,
            ffn_dim: 16,
            vocab_size: 10,
            context_length: 64,
            rms_eps: 1e-5,
            rope_base: 10_000.0,
            rope_freq_scale: 1.0,
            rope_dim: 4,
            sliding_window: None,
            attn_scale: 0.5,
            kv_type: KvType::F16,
            rotations: Default::default(),
        }
    }

    #[test]
    fn blocks_are_shared_and_returned() {
        let mut kv = KvCache::new(&cfg(), 96, 16); // 6 blocks
        let a = kv.add_sequence();
        let b = kv.add_sequence();
        kv.reserve(a, 20).unwrap(); // 2 blocks
        kv.reserve(b, 40).unwrap(); // 3 blocks
        assert_eq!(kv.free_slots(), 16);
        assert!(matches!(kv.reserve(a, 60), Err(ModelError::KvCacheFull { .. })));
        assert_eq!(kv.seq_len(a).unwrap(), 20, "a failed reserve changes nothing");
        // slots of different sequences never overlap
        let sa: Vec<usize> = (0..20).map(|p| kv.slot_offset(a, p)).collect();
        let sb: Vec<usize> = (0..40).map(|p| kv.slot_offset(b, p)).collect();
        assert!(sa.iter().all(|o| !sb.contains(o)));
        kv.remove_sequence(b);
        assert_eq!(kv.free_slots(), 64);
        kv.reserve(a, 60).unwrap();
        assert_eq!(kv.free_slots(), 32);
        kv.truncate(a, 17).unwrap();
        assert_eq!(kv.seq_len(a).unwrap(), 17);
        assert_eq!(kv.free_slots(), 64);
        let c = kv.add_sequence();
        assert_eq!(c, b, "freed sequence ids are reused");
        assert!(kv.seq_len(SeqId(99)).is_err());
    }

    #[test]
    fn forks_share_blocks_and_copy_on_write() {
        let mut kv = KvCache::new(&cfg(), 64, 4); // 16 blocks of 4
        let kv_dim = cfg().kv_dim();
        let p = kv.add_sequence();
        kv.reserve(p, 6).unwrap(); // blocks 0..2, the second half full
        for pos in 0..6 {
            let off = kv.slot_offset(p, pos);
            kv.write(0, off, &vec![pos as f32; kv_dim], &vec![-(pos as f32); kv_dim]);
        }
        let free = kv.free_slots();
        let c = kv.fork_sequence(p, 6).unwrap();
        assert_eq!((kv.seq_len(c).unwrap(), kv.free_slots()), (6, free), "a fork copies nothing");
        assert_eq!(kv.slot_offset(c, 5), kv.slot_offset(p, 5));
        // The child writes past 6: the shared, partly filled block is copied first.
        kv.reserve(c, 7).unwrap();
        assert_eq!(kv.free_slots(), free - 4);
        assert_eq!(kv.slot_offset(c, 0), kv.slot_offset(p, 0), "full blocks stay shared");
        assert_ne!(kv.slot_offset(c, 5), kv.slot_offset(p, 5));
        let off = kv.slot_offset(c, 6);
        kv.write(0, off, &vec![9.0; kv_dim], &vec![9.0; kv_dim]);
        for pos in 0..6 {
            for s in [p, c] {
                let (k, v) = rows(&kv, 0, kv.slot_offset(s, pos));
                assert_eq!((k[0], v[0]), (pos as f32, -(pos as f32)));
            }
        }
        // The parent now writes into its own (no longer shared) block in place.
        let before = kv.slot_offset(p, 5);
        kv.reserve(p, 7).unwrap();
        assert_eq!(kv.slot_offset(p, 5), before);
        // Truncating into a shared block, then growing, copies it too.
        let d = kv.fork_sequence(p, 4).unwrap();
        kv.truncate(p, 2).unwrap();
        let shared = kv.slot_offset(d, 0);
        assert_eq!(kv.slot_offset(p, 0), shared);
        kv.reserve(p, 3).unwrap();
        assert_ne!(kv.slot_offset(p, 0), shared);
        assert_eq!(rows(&kv, 0, kv.slot_offset(p, 1)).0[0], 1.0);
        // Blocks come back only when their last holder lets go.
        kv.remove_sequence(p);
        kv.remove_sequence(c);
        assert_eq!(kv.free_slots(), 64 - 4, "d still holds one block");
        kv.remove_sequence(d);
        assert_eq!(kv.free_slots(), 64);
        assert!(matches!(kv.fork_sequence(d, 0), Err(ModelError::UnknownSequence(_))));
        let e = kv.add_sequence();
        assert!(matches!(kv.fork_sequence(e, 1), Err(ModelError::ForkBeyondEnd { .. })));
    }

    #[test]
    fn write_then_read_rounds_to_f16() {
        let mut kv = KvCache::new(&cfg(), 16, 4);
        let s = kv.add_sequence();
        kv.reserve(s, 5).unwrap();
        let off = kv.slot_offset(s, 4);
        kv.write(1, off, &[1.0, 2.0, 3.0, 1.0 / 3.0], &[4.0; 4]);
        let (k, v) = rows(&kv, 1, off);
        assert_eq!(k[1], 2.0);
        assert_eq!(k[3], half::f16::from_f32(1.0 / 3.0).to_f32());
        assert_eq!(v[0], 4.0);
    }

    #[test]
    fn retained_blocks_outlive_their_sequence_and_start_new_ones() {
        let mut kv = KvCache::new(&cfg(), 96, 16); // 6 blocks
        let a = kv.add_sequence();
        kv.reserve(a, 40).unwrap(); // 3 blocks, the last partly filled
        assert_eq!(KvCache::token_bytes(&cfg()), kv.bytes_per_token());
        kv.write(0, kv.slot_offset(a, 17), &[1.0; 4], &[2.0; 4]);
        let table = kv.block_table(a).unwrap().to_vec();
        assert_eq!(table.len(), 3);
        // A prefix cache keeps the two full blocks.
        assert!(table[..2].iter().all(|&b| kv.retain_block(b)));
        assert_eq!(kv.block_refs(table[0]), 2);
        assert_eq!(kv.blocks_needed(a, 48).unwrap(), 0);
        assert_eq!(kv.blocks_needed(a, 49).unwrap(), 1);
        kv.remove_sequence(a);
        assert_eq!(kv.free_blocks(), 4, "the retained blocks stay held");
        assert!(!kv.retain_block(table[2]), "a free block cannot be retained");
        assert!(!kv.retain_block(99));
        // A new sequence on the cached blocks sees the same keys.
        let b = kv.add_sequence_on(&table[..2], 32).unwrap();
        assert_eq!(kv.seq_len(b).unwrap(), 32);
        assert_eq!(kv.slot_offset(b, 17), {
            let bs = kv.block_size();
            (table[1] as usize * bs + 1) * kv.row
        });
        assert_eq!(rows(&kv, 0, kv.slot_offset(b, 17)).0[0], 1.0);
        // Wrong block counts and free blocks are refused.
        assert!(matches!(kv.add_sequence_on(&table[..2], 33), Err(ModelError::BadBlocks { .. })));
        assert!(matches!(kv.add_sequence_on(&table[..1], 32), Err(ModelError::BadBlocks { .. })));
        assert!(matches!(kv.add_sequence_on(&table[2..], 5), Err(ModelError::BadBlocks { .. })));
        // Mid-block start on a shared block: the first write copies it.
        let c = kv.add_sequence_on(&table[..2], 20).unwrap();
        assert_eq!(kv.blocks_needed(c, 21).unwrap(), 1, "copy-on-write of the shared block");
        kv.reserve(c, 21).unwrap();
        assert_ne!(kv.block_table(c).unwrap()[1], table[1]);
        kv.remove_sequence(b);
        kv.remove_sequence(c);
        for &t in &table[..2] {
            kv.release_block(t);
        }
        assert_eq!(kv.free_blocks(), 6);
        kv.release_block(table[0]); // releasing a free block is a no-op
        assert_eq!(kv.free_blocks(), 6);
    }

    #[test]
    fn quantized_rows_take_their_format_bytes_and_round_trip_through_forks() {
        // Heads of 32 (whole Q8_0/Q4_0 blocks), 2 KV heads, 2 layers.
        let base = ModelConfig { head_dim: 32, rope_dim: 32, n_head: 4, n_kv_head: 2, ..cfg() };
        assert!(matches!(
            cfg().with_kv_type("q8_0".parse().unwrap()),
            Err(ModelError::KvTypeUnfit { head_dim: 4, .. })
        ));
        let x: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
        for (name, bytes, tol) in [("f16", 128, 2e-3), ("q8_0", 68, 0.02), ("q4_0", 36, 0.4)] {
            let c = base.clone().with_kv_type(name.parse().unwrap()).unwrap();
            assert_eq!(KvCache::token_bytes(&c), 2 * 2 * bytes, "{name}");
            let mut kv = KvCache::new(&c, 32, 4);
            assert_eq!(kv.bytes_per_token(), KvCache::token_bytes(&c));
            assert_eq!(kv.kv_type().to_string(), name);
            let s = kv.add_sequence();
            kv.reserve(s, 3).unwrap();
            let off = kv.slot_offset(s, 2);
            let neg: Vec<f32> = x.iter().map(|v| -v).collect();
            kv.write(1, off, &x, &neg);
            // Written as the format's encoder writes (the bytes decode as its codec decodes).
            let mut want = vec![0u8; bytes];
            kv.kv_type().ggml().from_f32(&x, &mut want).unwrap();
            let k_row = &kv.layer(1).k[off..off + bytes];
            if name != "q8_0" {
                assert_eq!(k_row, &want[..], "{name}: the reference codec's bytes");
            }
            // A fork shares the row; copy-on-write copies its bytes.
            let f = kv.fork_sequence(s, 3).unwrap();
            kv.reserve(f, 4).unwrap();
            let moved = kv.slot_offset(f, 2);
            assert_ne!(moved, off);
            let (k, v) = rows(&kv, 1, moved);
            assert_eq!(rows(&kv, 1, off), (k.clone(), v.clone()), "{name}: copied bytes");
            for i in 0..64 {
                assert!((k[i] - x[i]).abs() <= tol && (v[i] + x[i]).abs() <= tol, "{name} [{i}]");
            }
        }
    }
}
