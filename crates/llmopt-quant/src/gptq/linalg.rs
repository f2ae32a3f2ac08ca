//! The dense f64 linear algebra GPTQ needs, on row-major n x n matrices: a Cholesky factor taken
//! from the bottom-right corner up, so that the upper factor of H⁻¹ comes from one triangular inverse.

/// Why a matrix could not be factored: it is not positive definite (pivot `index` was `pivot`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NotPositiveDefinite {
    pub index: usize,
    pub pivot: f64,
}

/// The upper-triangular `U` with `UᵀU = H⁻¹` (row-major; below the diagonal zero), for a
/// symmetric positive definite `h` (n x n, row-major; only its upper triangle is read), on up to
/// `threads` threads.
///
/// `H⁻¹ = UᵀU` means `H = V Vᵀ` with `V = U⁻¹` upper triangular: a Cholesky factor taken from
/// the last row up. So `V` is factored in place (n³/3) and inverted (n³/3), instead of
/// factoring, inverting and factoring again (5n³/3).
pub fn inverse_upper_cholesky(
    h: &[f64],
    n: usize,
    threads: usize,
) -> Result<Vec<f64>, NotPositiveDefinite> {
    let threads = threads.max(1);
    let v = reverse_cholesky(h, n, threads)?;
    Ok(invert_upper(&v, n, threads))
}

/// Work (multiply-adds) below which a step runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 16;

/// `V` upper triangular with `H = V Vᵀ`: column `j` from the last to the first,
/// `V[j][j]² = H[j][j] - Σ_{k>j} V[j][k]²`, `V[i][j] = (H[i][j] - Σ_{k>j} V[i][k] V[j][k]) / V[j][j]`.
fn reverse_cholesky(h: &[f64], n: usize, threads: usize) -> Result<Vec<f64>, NotPositiveDefinite> {
    let mut v = vec![0.0f64; n * n];
    for j in (0..n).rev() {
        let (above, rest) = v.split_at_mut(j * n);
        let row_j = &mut rest[..n];
        let d = h[j * n + j] - dot(&row_j[j + 1..], &row_j[j + 1..]);
        if !(d > 0.0 && d.is_finite()) {
            return Err(NotPositiveDefinite { index: j, pivot: d });
        }
        let d = d.sqrt();
        row_j[j] = d;
        let row_j = &row_j[..];
        // Rows i < j: each holds its columns > j already.
        let column = |first: usize, rows: &mut [f64]| {
            for (r, row) in rows.chunks_exact_mut(n).enumerate() {
                let i = first + r;
                row[j] = (h[i * n + j] - dot(&row[j + 1..], &row_j[j + 1..])) / d;
            }
        };
        let per = j.div_ceil(threads).max(1);
        if threads == 1 || j * (n - j) < PARALLEL_WORK {
            column(0, above);
        } else {
            std::thread::scope(|s| {
                for (k, rows) in above.chunks_mut(per * n).enumerate() {
                    let column = &column;
                    s.spawn(move || column(k * per, rows));
                }
            });
        }
    }
    Ok(v)
}

/// The inverse of an upper-triangular matrix with a nonzero diagonal, column by column (each a
/// back substitution, independent of the others, so columns are dealt to threads):
/// `U[k][k] = 1/V[k][k]`, `U[i][k] = -(Σ_{i<m≤k} V[i][m] U[m][k]) / V[i][i]` for `i < k`.
fn invert_upper(v: &[f64], n: usize, threads: usize) -> Vec<f64> {
    // Column k of U is kept as row k of `ut`, so every sum is over contiguous memory.
    let mut ut = vec![0.0f64; n * n];
    let solve = |k: usize, col: &mut [f64]| {
        col[k] = 1.0 / v[k * n + k];
        for i in (0..k).rev() {
            col[i] = -dot(&v[i * n + i + 1..i * n + k + 1], &col[i + 1..k + 1]) / v[i * n + i];
        }
    };
    let threads = if n * n * n / 6 < PARALLEL_WORK { 1 } else { threads };
    std::thread::scope(|s| {
        let mut lanes: Vec<Vec<(usize, &mut [f64])>> = (0..threads).map(|_| Vec::new()).collect();
        for (k, col) in ut.chunks_exact_mut(n).enumerate() {
            lanes[k % threads].push((k, col));
        }
        for lane in lanes {
            let solve = &solve;
            s.spawn(move || lane.into_iter().for_each(|(k, col)| solve(k, col)));
        }
    });
    let mut u = vec![0.0f64; n * n];
    for k in 0..n {
        for i in 0..=k {
            u[i * n + k] = ut[k * n + i];
        }
    }
    u
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four lanes, so the loop vectorizes without reassociation flags.
    let mut s = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            s[l] += x[l] * y[l];
        }
    }
    s[0] + s[1] + s[2] + s[3] + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric positive definite matrix: AᵀA + n·I from a fixed pseudo-random A.
    fn spd(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        let a: Vec<f64> = (0..n * n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect();
        let mut h = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] = (0..n).map(|k| a[k * n + i] * a[k * n + j]).sum::<f64>();
            }
            h[i * n + i] += 0.1 * n as f64;
        }
        h
    }

    /// Solves `H x = b` by Gaussian elimination with partial pivoting (the direct reference).
    fn solve(h: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        let mut a: Vec<Vec<f64>> = (0..n).map(|i| h[i * n..(i + 1) * n].to_vec()).collect();
        let mut x = b.to_vec();
        for c in 0..n {
            let p = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap();
            a.swap(c, p);
            x.swap(c, p);
            let pivot = a[c].clone();
            for r in c + 1..n {
                let f = a[r][c] / pivot[c];
                for (v, p) in a[r][c..].iter_mut().zip(&pivot[c..]) {
                    *v -= f * p;
                }
                x[r] -= f * x[c];
            }
        }
        for c in (0..n).rev() {
            x[c] = (x[c] - (c + 1..n).map(|k| a[c][k] * x[k]).sum::<f64>()) / a[c][c];
        }
        x
    }

    #[test]
    fn upper_factor_of_the_inverse_matches_a_direct_solve() {
        for (n, seed) in [(1, 1), (2, 2), (7, 3), (33, 4), (70, 5), (130, 6)] {
            let h = spd(n, seed);
            let u = inverse_upper_cholesky(&h, n, 3).unwrap();
            for i in 0..n {
                for k in 0..i {
                    assert_eq!(u[i * n + k], 0.0, "upper triangular");
                }
            }
            // Column c of H⁻¹ = UᵀU against H x = e_c.
            for c in 0..n {
                let mut e = vec![0.0; n];
                e[c] = 1.0;
                let x = solve(&h, &e, n);
                for r in 0..n {
                    let utu: f64 = (0..n).map(|m| u[m * n + r] * u[m * n + c]).sum();
                    assert!((utu - x[r]).abs() < 1e-10 * x[c].abs().max(1.0), "n {n} ({r},{c})");
                }
            }
        }
    }

    #[test]
    fn refuses_a_matrix_that_is_not_positive_definite() {
        let h = [1.0, 2.0, 2.0, 1.0];
        assert_eq!(inverse_upper_cholesky(&h, 2, 1).unwrap_err().index, 0);
        let h = [1.0, 0.0, 0.0, -1.0];
        assert_eq!(inverse_upper_cholesky(&h, 2, 1).unwrap_err().index, 1);
    }
}
