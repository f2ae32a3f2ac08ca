//! Encoders against ggml itself: `fixtures/ggml-quants.bin` holds what llama.cpp's
//! `ggml_quantize_chunk` wrote for a few rows, with and without importances; we must write the same.
//!
//! The rows come from `scripts/fixtures/kquant_ref.c`, whose generator [`make_row`] repeats step
//! for step (splitmix64, every float operation exact or identically rounded). Provenance and the
//! command are in `fixtures/ggml-quants.md`.

use std::path::PathBuf;

use llmopt_tensor::GgmlType;

struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 24 random bits as a float in [-1, 1).
    fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as i32 as f32 - 8_388_608.0) * (1.0 / 8_388_608.0)
    }
}

const ROW_LEN: [usize; 5] = [256, 768, 256, 256, 256];

/// Row `r` and its importances, as `make_row` in `kquant_ref.c`: 0 bell-shaped; 1 three
/// super-blocks (a scale per 32 with outliers, cubed uniforms, f16-subnormal scales); 2 zeros;
/// 3 small values with one of 30000; 4 all negative. Every 23rd importance (from 5) is zero.
fn make_row(r: usize) -> (Vec<f32>, Vec<f32>) {
    let n = ROW_LEN[r];
    let mut g = SplitMix(0x6C6C_6D6F_7074 + r as u64);
    let mut s = 1.0f32;
    let mut x = Vec::with_capacity(n);
    for i in 0..n {
        let v = match (r, i) {
            (0, _) => {
                let mut v = g.unit();
                v += g.unit();
                v += g.unit();
                v += g.unit();
                v * 0.5
            }
            (1, 0..256) => {
                if i.is_multiple_of(32) {
                    s = 1.0 / 64.0;
                    for _ in 0..g.next_u64() % 9 {
                        s *= 2.0;
                    }
                }
                let v = g.unit() * s;
                if g.next_u64().is_multiple_of(29) {
                    v * 16.0
                } else {
                    v
                }
            }
            (1, 256..512) => {
                let u = g.unit();
                u * u * u * 8.0
            }
            (1, _) => g.unit() * (1.0 / 4096.0),
            (2, _) => 0.0,
            (3, _) => g.unit() * 0.01,
            _ => -((g.unit().abs() + 0.25) * 2.0),
        };
        x.push(v);
    }
    if r == 3 {
        x[77] = 30000.0;
    }
    let w = (0..n)
        .map(|i| {
            let u = g.unit();
            if i % 23 == 5 {
                0.0
            } else {
                u * u * 4.0 + 0.0625
            }
        })
        .collect();
    (x, w)
}

const N_BULK: usize = 64;

/// Bulk row `r` (256, 512 or 768 values), as `make_bulk_row` in `kquant_ref.c`: each run of 16
/// has a kind (uniform, sum of three, cubed, zero, constant, outliers) and a scale 2^-10..2^1;
/// importances have a scale per 32 columns and a zero in about 16.
fn make_bulk_row(r: usize) -> (Vec<f32>, Vec<f32>) {
    let n = 256 * (1 + r % 3);
    let mut g = SplitMix(0x6C6C_6D6F_7074 + 1000 + r as u64);
    let (mut kind, mut s) = (0, 1.0f32);
    let mut x = Vec::with_capacity(n);
    for i in 0..n {
        if i.is_multiple_of(16) {
            kind = g.next_u64() % 8;
            s = 1.0 / 1024.0;
            for _ in 0..g.next_u64() % 12 {
                s *= 2.0;
            }
        }
        let v = match kind {
            0..=2 => g.unit() * s,
            3 => {
                let mut v = g.unit();
                v += g.unit();
                v += g.unit();
                v * s
            }
            4 => {
                let u = g.unit();
                u * u * u * s
            }
            5 => 0.0,
            6 => -s,
            _ => {
                let v = g.unit() * s;
                if g.next_u64().is_multiple_of(5) {
                    v * 64.0
                } else {
                    v
                }
            }
        };
        x.push(v);
    }
    let mut ws = 1.0f32;
    let mut w = Vec::with_capacity(n);
    for i in 0..n {
        if i.is_multiple_of(32) {
            ws = 0.25;
            for _ in 0..g.next_u64() % 6 {
                ws *= 2.0;
            }
        }
        let u = g.unit();
        let v = (u * u * 4.0 + 0.0625) * ws;
        w.push(if g.next_u64().is_multiple_of(16) { 0.0 } else { v });
    }
    (x, w)
}

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01B3);
    }
    h
}

struct Record {
    ty: GgmlType,
    weighted: bool,
    row: usize,
    bytes: Vec<u8>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

struct Digest {
    ty: GgmlType,
    weighted: bool,
    n_rows: usize,
    fnv: u64,
}

fn load() -> (Vec<Record>, Vec<Digest>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ggml-quants.bin");
    let b = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/fixtures/kquant_ref.sh", path.display()));
    assert_eq!(&b[..8], b"GGMLQREF");
    assert_eq!(u32_at(&b, 8), 1, "fixture version");
    let count = u32_at(&b, 12) as usize;
    let mut off = 16;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let ty = GgmlType::from_u32(u32_at(&b, off)).expect("known type id");
        let (weighted, row) = (b[off + 4] == 1, b[off + 5] as usize);
        let n = u32_at(&b, off + 8) as usize;
        out.push(Record { ty, weighted, row, bytes: b[off + 12..off + 12 + n].to_vec() });
        off += 12 + n;
    }
    let n_digests = u32_at(&b, off) as usize;
    off += 4;
    let mut digests = Vec::with_capacity(n_digests);
    for _ in 0..n_digests {
        digests.push(Digest {
            ty: GgmlType::from_u32(u32_at(&b, off)).expect("known type id"),
            weighted: b[off + 4] == 1,
            n_rows: u32_at(&b, off + 8) as usize,
            fnv: u64::from_le_bytes(b[off + 12..off + 20].try_into().unwrap()),
        });
        off += 20;
    }
    assert_eq!(off, b.len(), "trailing bytes in the fixture");
    (out, digests)
}

const TYPES: [GgmlType; 11] = {
    use GgmlType::*;
    [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4]
};

fn path_name(weighted: bool) -> &'static str {
    if weighted {
        "weighted"
    } else {
        "ref"
    }
}

/// What ggml writes for `ty` on this path. ggml encodes MXFP4 without importances even when
/// given an imatrix (`quantize_mxfp4` ignores them), so both of its paths are our reference
/// encoder; our own weighted MXFP4 (a scale search) is a choice llama-quantize does not make.
fn encode(ty: GgmlType, weighted: bool, x: &[f32], w: &[f32]) -> Vec<u8> {
    let mut q = vec![0xAAu8; ty.row_bytes(x.len()).unwrap()];
    if weighted && ty != GgmlType::MXFP4 {
        ty.quantize_row_weighted(x, w, &mut q).unwrap();
    } else {
        ty.from_f32(x, &mut q).unwrap();
    }
    q
}

#[test]
fn encoders_equal_ggml_bytes_for_every_type_and_path() {
    let (records, _) = load();
    assert_eq!(records.len(), TYPES.len() * 2 * ROW_LEN.len());
    let rows: Vec<_> = (0..ROW_LEN.len()).map(make_row).collect();
    let mut failures = Vec::new();
    for rec in &records {
        assert!(TYPES.contains(&rec.ty));
        let (x, w) = &rows[rec.row];
        let ours = encode(rec.ty, rec.weighted, x, w);
        assert_eq!(ours.len(), rec.bytes.len());
        let bb = rec.ty.spec().block_bytes;
        for (i, (a, b)) in ours.chunks(bb).zip(rec.bytes.chunks(bb)).enumerate() {
            if a != b {
                let path = path_name(rec.weighted);
                failures.push(format!("{} {path} row {} block {i}", rec.ty, rec.row));
            }
        }
    }
    assert!(failures.is_empty(), "differs from ggml:\n{}", failures.join("\n"));
}

#[test]
fn encoders_equal_ggml_digests_on_bulk_rows() {
    let (_, digests) = load();
    assert_eq!(digests.len(), TYPES.len() * 2);
    let rows: Vec<_> = (0..N_BULK).map(make_bulk_row).collect();
    let mut failures = Vec::new();
    for d in &digests {
        assert_eq!(d.n_rows, N_BULK);
        let mut h = 0xCBF2_9CE4_8422_2325u64;
        for (x, w) in &rows {
            h = fnv1a(h, &encode(d.ty, d.weighted, x, w));
        }
        if h != d.fnv {
            failures.push(format!("{} {}", d.ty, path_name(d.weighted)));
        }
    }
    assert!(failures.is_empty(), "bulk rows differ from ggml: {}", failures.join(", "));
}
