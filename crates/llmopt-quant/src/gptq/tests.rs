//! GPTQ on random weights with a known, correlated Hessian: its proxy loss `tr((W−Q)H(W−Q)ᵀ)` is
//! lower than round to nearest's and the weighted encoder's alone, for every format and shape.

use super::*;
use llmopt_model::Observer;

/// A fixed pseudo-random stream of roughly normal numbers.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.uniform()).sum::<f32>() - 2.0
    }
}

/// `m` tokens of `n` correlated features (mixed by a random matrix, a few columns 5x larger).
fn activations(rng: &mut Rng, m: usize, n: usize) -> Vec<f32> {
    let mix: Vec<f32> = (0..n * 8).map(|_| rng.normal()).collect();
    let mut x = vec![0f32; m * n];
    for t in 0..m {
        let z: Vec<f32> = (0..8).map(|_| rng.normal()).collect();
        for j in 0..n {
            let common: f32 = (0..8).map(|k| z[k] * mix[j * 8 + k]).sum();
            let scale = if j % 37 == 3 { 5.0 } else { 1.0 };
            x[t * n + j] = scale * (0.7 * common + rng.normal());
        }
    }
    x
}

/// `Σ_r (w_r − q_r)ᵀ H (w_r − q_r)` with `q` decoded from `enc`.
fn proxy_loss(w: &[f32], enc: &[u8], ty: GgmlType, h: &[f64], n: usize) -> f64 {
    let mut q = vec![0f32; w.len()];
    ty.to_f32(enc, &mut q).unwrap();
    let mut loss = 0.0;
    for (wr, qr) in w.chunks_exact(n).zip(q.chunks_exact(n)) {
        let d: Vec<f64> = wr.iter().zip(qr).map(|(a, b)| f64::from(a - b)).collect();
        for i in 0..n {
            loss += d[i] * (0..n).map(|j| h[i * n + j] * d[j]).sum::<f64>();
        }
    }
    loss
}

#[test]
fn gptq_beats_round_to_nearest_on_the_proxy_loss() {
    use GgmlType::*;
    let cases = [
        (Q4_0, 5, 96),
        (Q4_0, 9, 160),
        (Q5_0, 3, 320),
        (Q4_K, 7, 512),
        (Q4_K, 3, 768),
        (Q3_K, 5, 512),
        (Q2_K, 4, 512),
        (Q6_K, 3, 512),
    ];
    let mut rng = Rng(7);
    for (ty, rows, n) in cases {
        let x = activations(&mut rng, 2 * n, n);
        let mut hs = Hessian::new(n);
        hs.add(2 * n, &x, 3);
        let h = hs.to_f64();
        let w: Vec<f32> = (0..rows * n).map(|_| 0.05 * rng.normal()).collect();
        let bytes = ty.row_bytes(n).unwrap() * rows;
        let mut rtn = vec![0u8; bytes];
        ty.from_f32(&w, &mut rtn).unwrap();
        let rtn_loss = proxy_loss(&w, &rtn, ty, &h, n);
        // The imatrix method: the weighted encoder with the same diagonal, no error feedback.
        let diag: Vec<f32> = (0..n).map(|i| h[i * n + i] as f32).collect();
        let mut imat = vec![0u8; bytes];
        for (x, q) in w.chunks_exact(n).zip(imat.chunks_exact_mut(bytes / rows)) {
            ty.spec().from_f32_weighted.unwrap()(x, &diag, q);
        }
        let imatrix_loss = proxy_loss(&w, &imat, ty, &h, n);
        for (act_order, weighted) in [(false, false), (false, true), (true, true)] {
            let cfg = GptqConfig { damp: 0.01, act_order, weighted };
            let p = Prepared::new("w", &hs, ty, &cfg, 2).unwrap();
            let mut out = vec![0u8; bytes];
            p.quantize_rows(&w, &mut out);
            let loss = proxy_loss(&w, &out, ty, &h, n);
            let bound = if weighted { imatrix_loss.min(rtn_loss) } else { rtn_loss };
            assert!(
                loss < 0.9 * bound,
                "{} {rows}x{n} act_order {act_order} weighted {weighted}: GPTQ {loss:.4e} vs RTN \
                 {rtn_loss:.4e}, imatrix {imatrix_loss:.4e}",
                ty.name()
            );
        }
    }
}

#[test]
fn gptq_lowers_the_8_bit_formats_loss_and_w8a16_is_q8_0s_bytes() {
    // Q8_0 and W8A16 share a codec and have no weighted encoder: GPTQ with the plain one.
    let (rows, n) = (6, 320);
    let mut rng = Rng(9);
    let x = activations(&mut rng, 2 * n, n);
    let mut hs = Hessian::new(n);
    hs.add(2 * n, &x, 3);
    let h = hs.to_f64();
    let w: Vec<f32> = (0..rows * n).map(|_| 0.05 * rng.normal()).collect();
    let cfg = GptqConfig { damp: 0.01, act_order: false, weighted: false };
    let mut outs = Vec::new();
    for ty in [GgmlType::Q8_0, GgmlType::W8A16] {
        let bytes = ty.row_bytes(n).unwrap() * rows;
        let mut rtn = vec![0u8; bytes];
        ty.from_f32(&w, &mut rtn).unwrap();
        let mut out = vec![0u8; bytes];
        Prepared::new("w", &hs, ty, &cfg, 2).unwrap().quantize_rows(&w, &mut out);
        let (loss, rtn_loss) = (proxy_loss(&w, &out, ty, &h, n), proxy_loss(&w, &rtn, ty, &h, n));
        assert!(loss < 0.9 * rtn_loss, "{ty}: GPTQ {loss:.4e} vs RTN {rtn_loss:.4e}");
        outs.push(out);
    }
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn hessian_sums_match_a_direct_product_on_any_thread_count() {
    let mut rng = Rng(3);
    let (m, n) = (9, 13);
    let x: Vec<f32> = (0..m * n).map(|_| rng.normal()).collect();
    for threads in [1, 2, 5, 40] {
        let mut h = Hessian::new(n);
        h.add(5, &x[..5 * n], threads);
        h.add(4, &x[5 * n..], threads);
        assert_eq!(h.tokens(), 9);
        let full = h.to_f64();
        for i in 0..n {
            for j in 0..n {
                let direct: f64 =
                    (0..m).map(|t| f64::from(x[t * n + i]) * f64::from(x[t * n + j])).sum();
                let want = 2.0 / m as f64 * direct;
                assert!((full[i * n + j] - want).abs() < 1e-4, "{threads} ({i},{j})");
            }
        }
    }
}

#[test]
fn shared_inputs_share_one_hessian() {
    assert_eq!(hessian_key("blk.3.attn_k.weight"), "blk.3.attn_q.weight");
    assert_eq!(hessian_key("blk.3.attn_v.weight"), "blk.3.attn_q.weight");
    assert_eq!(hessian_key("blk.3.ffn_up.weight"), "blk.3.ffn_gate.weight");
    assert_eq!(hessian_key("blk.3.ffn_down.weight"), "blk.3.ffn_down.weight");
    let mut hs = Hessians::default();
    hs.threads = 1;
    let x = [1.0f32, 2.0, 3.0, 4.0];
    for name in ["blk.0.attn_q.weight", "blk.0.attn_k.weight", "output.weight"] {
        hs.on_linear(name, 2, &x, &[]);
    }
    assert_eq!(hs.len(), 1);
    assert_eq!(hs.get("blk.0.attn_v.weight").unwrap().tokens(), 2);
    hs.layers = Some(1..2);
    hs.on_linear("blk.0.ffn_down.weight", 2, &x, &[]);
    assert_eq!(hs.len(), 1, "outside the layers captured");
}

#[test]
fn refuses_what_it_cannot_factor_or_encode() {
    let mut hs = Hessian::new(32);
    let x = vec![1.0f32; 32];
    hs.add(1, &x, 1);
    // A rank-one Hessian without dampening is singular.
    let cfg = GptqConfig { damp: 0.0, act_order: false, weighted: false };
    let e = Prepared::new("w", &hs, GgmlType::Q4_0, &cfg, 1).unwrap_err().to_string();
    assert!(e.contains("not positive definite") && e.contains("--gptq-damp"), "{e}");
    assert!(Prepared::new("w", &hs, GgmlType::Q4_K, &GptqConfig::default(), 1).is_err());
    let e = Prepared::new("w", &hs, GgmlType::INT8_PC, &GptqConfig::default(), 1).unwrap_err();
    assert!(e.to_string().contains("one scale per row"), "{e}");
}
