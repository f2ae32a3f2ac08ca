//! The dense f64 linear algebra GPTQ needs, on row-major n x n matrices: a Cholesky factor taken
//! from the bottom-right corner up, so that the upper factor of H⁻¹ comes from one triangular inverse.

/// Why a matrix could not be factored: it is not positive definite (pivot `index` was `pivot`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NotPositiveDefinite {
    pub index: usize,
    pub pivot: f64,
}

/// The upper-triangular `U` with `UᵀU = H⁻¹` (row-major; below the diagonal zero), for a
/// symmetric positive definite `h` (n x n, row-major; only its upper triangle is read).
///
/// `H⁻¹ = UᵀU` means `H = V Vᵀ` with `V = U⁻¹` upper triangular: a Cholesky factor taken from
/// the last row up. So `V` is factored in place (n³/3) and inverted (n³/3), instead of
/// factoring, inverting and factoring again (5n³/3).
pub fn inverse_upper_cholesky(h: &[f64], n: usize) -> Result<Vec<f64>, NotPositiveDefinite> {
    let v = reverse_cholesky(h, n)?;
    Ok(invert_upper(&v, n))
}

/// `V` upper triangular with `H = V Vᵀ`: column `j` from the last to the first,
/// `V[j][j]² = H[j][j] - Σ_{k>j} V[j][k]²`, `V[i][j] = (H[i][j] - Σ_{k>j} V[i][k] V[j][k]) / V[j][j]`.
fn reverse_cholesky(h: &[f64], n: usize) -> Result<Vec<f64>, NotPositiveDefinite> {
    let mut v = vec![0.0f64; n * n];
    for j in (0..n).rev() {
        let vj = &v[j * n + j + 1..(j + 1) * n];
        let d = h[j * n + j] - dot(vj, vj);
        if !(d > 0.0 && d.is_finite()) {
            return Err(NotPositiveDefinite { index: j, pivot: d });
        }
        let d = d.sqrt();
        v[j * n + j] = d;
        for i in 0..j {
            // Row i of V holds columns > i; columns > j are already final.
            let (rows_i, rows_j) = v.split_at_mut(j * n);
            let s = dot(&rows_i[i * n + j + 1..(i + 1) * n], &rows_j[j + 1..n]);
            rows_i[i * n + j] = (h[i * n + j] - s) / d;
        }
    }
    Ok(v)
}

/// The inverse of an upper-triangular matrix with a nonzero diagonal, row by row from the last:
/// `U[i][i] = 1/V[i][i]`, `U[i][k] = -(Σ_{i<m≤k} V[i][m] U[m][k]) / V[i][i]` for `k > i`.
fn invert_upper(v: &[f64], n: usize) -> Vec<f64> {
    let mut u = vec![0.0f64; n * n];
    for i in (0..n).rev() {
        let (head, tail) = u.split_at_mut((i + 1) * n);
        let row = &mut head[i * n..];
        let inv = 1.0 / v[i * n + i];
        row[i] = inv;
        // row[k] accumulates Σ_m V[i][m] U[m][k] over the rows m > i already inverted.
        for m in i + 1..n {
            let c = v[i * n + m];
            if c != 0.0 {
                let um = &tail[(m - i - 1) * n..(m - i) * n];
                for k in m..n {
                    row[k] += c * um[k];
                }
            }
        }
        for x in &mut row[i + 1..] {
            *x *= -inv;
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
        for (n, seed) in [(1, 1), (2, 2), (7, 3), (33, 4), (70, 5)] {
            let h = spd(n, seed);
            let u = inverse_upper_cholesky(&h, n).unwrap();
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
        assert_eq!(inverse_upper_cholesky(&h, 2).unwrap_err().index, 0);
        let h = [1.0, 0.0, 0.0, -1.0];
        assert_eq!(inverse_upper_cholesky(&h, 2).unwrap_err().index, 1);
    }
}
