// BatchNorm statistics: per-channel sums → [mean (C) | istd (C)], and the running averages.
@group(0) @binding(1) var<storage, read> sums: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_var: array<f32>;

// Training (stats[0..C] already holds the batch mean, sums = Σ(x − mean)²):
// istd = 1/√(Σ/n + eps); running = (1 − m)·running + m·(mean, Σ/(n − 1)).
// Eval: stats = (running_mean, 1/√(running_var + eps)).
// p: c, rows, eps, momentum, training.
@compute @workgroup_size(256)
fn statistics(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let j = flat(wid, nwg, lid, 256u);
    let c = pu(0u);
    _ = sums[0];
    if (j >= c) { return; }
    let eps = pf(2u);
    if (pu(4u) != 0u) {
        let n = f32(pu(1u));
        let ss = sums[j];
        stats[c + j] = 1.0 / sqrt(ss / n + eps);
        let m = pf(3u);
        running_mean[j] = (1.0 - m) * running_mean[j] + m * stats[j];
        running_var[j] = (1.0 - m) * running_var[j] + m * (ss / (n - 1.0));
    } else {
        stats[j] = running_mean[j];
        stats[c + j] = 1.0 / sqrt(running_var[j] + eps);
    }
}
