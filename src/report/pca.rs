//! Two-component PCA of an embedding table, in f64, by power iteration with deflation.
//!
//! t-SNE is not offered: the one maintained pure-Rust crate (`bhtsne` 0.7) brings a second
//! `rand` (0.9), `rand_distr`, `rustfft`/`realfft` and `barnes-hut-tree` into a build that
//! must stay quick on two cores, for a view that PCA (deterministic, a few dozen lines, no
//! new dependency) already gives; it can come back as an optional feature if wanted.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Iteration cap of the power method (reached only when two variances nearly tie, where
/// any vector of their plane is an equally good component).
const MAX_ITERS: usize = 5000;
/// Convergence: change of the unit vector between two iterations.
const TOL: f64 = 1e-12;

/// The two leading principal components of a table's rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Pca2 {
    /// Unit vectors of length E, orthogonal; each has its largest-magnitude coordinate
    /// positive (lowest index on exact ties), so the result does not depend on the
    /// iteration's start. A component with no variance left is all zeros.
    pub components: [Vec<f64>; 2],
    /// Variance of the rows along each component (sample variance, divisor V-1), the first
    /// at least as large as the second.
    pub variances: [f64; 2],
    /// Total variance of the rows (trace of the covariance), for "explained" fractions.
    pub total_variance: f64,
    /// Each row, centred, projected on the two components.
    pub points: Vec<[f64; 2]>,
}

/// PCA of the rows of a (V, E) table; errors when the table is not 2-D, empty or not finite.
pub fn pca2(table: &Tensor) -> Result<Pca2> {
    let &[v, e] = table.shape() else {
        return Err(Error::shape("embedding_pca", format!("expected a (V, E) table, got shape {:?}", table.shape())));
    };
    if v == 0 || e == 0 {
        return Err(Error::shape("embedding_pca", format!("empty table of shape [{v}, {e}]")));
    }
    if !table.all_finite() {
        return Err(Error::Data("embedding table holds NaN or infinite values".into()));
    }
    let data = table.data();
    let mut mean = vec![0.0f64; e];
    for row in data.chunks_exact(e) {
        mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x as f64);
    }
    mean.iter_mut().for_each(|m| *m /= v as f64);
    let centred: Vec<Vec<f64>> = data.chunks_exact(e).map(|row| row.iter().zip(&mean).map(|(&x, m)| x as f64 - m).collect()).collect();

    // Covariance (E × E), symmetric.
    let mut cov = vec![0.0f64; e * e];
    for row in &centred {
        for i in 0..e {
            let ri = row[i];
            for j in i..e {
                cov[i * e + j] += ri * row[j];
            }
        }
    }
    let denom = (v.max(2) - 1) as f64;
    for i in 0..e {
        for j in i..e {
            cov[i * e + j] /= denom;
            cov[j * e + i] = cov[i * e + j];
        }
    }
    let trace: f64 = (0..e).map(|i| cov[i * e + i]).sum();

    let (c1, var1) = leading_component(&cov, e, &[], trace);
    for i in 0..e {
        for j in 0..e {
            cov[i * e + j] -= var1 * c1[i] * c1[j];
        }
    }
    let (c2, var2) = leading_component(&cov, e, &c1, trace);
    // Guard the order when two variances nearly tie and the iteration stopped at its cap.
    let ([c1, c2], [var1, var2]) = if var2 > var1 { ([c2, c1], [var2, var1]) } else { ([c1, c2], [var1, var2]) };
    let points = centred.iter().map(|row| [dot(row, &c1), dot(row, &c2)]).collect();
    Ok(Pca2 { components: [c1, c2], variances: [var1, var2], total_variance: trace, points })
}

/// The 2-D PCA coordinates of every row of a (V, E) embedding table (see [`pca2`]).
pub fn embedding_pca(table: &Tensor) -> Result<Vec<[f64; 2]>> {
    Ok(pca2(table)?.points)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Power iteration on the symmetric PSD matrix `cov` (E × E), kept orthogonal to `against`
/// (the component already deflated, empty for the first). Starts from a fixed pseudo-random
/// vector, so it is never orthogonal to the answer by construction. Returns the unit vector
/// with the sign convention of [`Pca2::components`] and its Rayleigh quotient; variances at
/// or below 1e-12 of the total give a zero vector and zero variance.
fn leading_component(cov: &[f64], e: usize, against: &[f64], trace: f64) -> (Vec<f64>, f64) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut vec: Vec<f64> = (0..e)
        .map(|_| {
            // splitmix64, mapped to [-1, 1).
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect();
    let floor = 1e-12 * trace.max(f64::MIN_POSITIVE);
    let orthonormalize = |x: &mut Vec<f64>| -> f64 {
        if !against.is_empty() {
            let d = dot(x, against);
            x.iter_mut().zip(against).for_each(|(a, b)| *a -= d * b);
        }
        let n = dot(x, x).sqrt();
        if n > 0.0 {
            x.iter_mut().for_each(|a| *a /= n);
        }
        n
    };
    if orthonormalize(&mut vec) == 0.0 {
        return (vec![0.0; e], 0.0);
    }
    let mut next = vec![0.0; e];
    for _ in 0..MAX_ITERS {
        for (i, out) in next.iter_mut().enumerate() {
            *out = dot(&cov[i * e..(i + 1) * e], &vec);
        }
        if orthonormalize(&mut next) <= floor {
            return (vec![0.0; e], 0.0);
        }
        let change = next.iter().zip(&vec).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
        std::mem::swap(&mut vec, &mut next);
        if change < TOL {
            break;
        }
    }
    // Sign convention: the largest-magnitude coordinate is positive.
    let mut arg = 0;
    for (i, x) in vec.iter().enumerate() {
        if x.abs() > vec[arg].abs() {
            arg = i;
        }
    }
    if vec[arg] < 0.0 {
        vec.iter_mut().for_each(|x| *x = -*x);
    }
    let var: f64 = (0..e).map(|i| vec[i] * dot(&cov[i * e..(i + 1) * e], &vec)).sum();
    if var <= floor {
        return (vec![0.0; e], 0.0);
    }
    (vec, var)
}
