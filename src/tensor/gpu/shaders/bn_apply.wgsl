// xhat = (x − mean)·istd and y = xhat·γ + β per channel: x, stats [mean | istd], γ, β → y, xhat.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read_write> xhat: array<f32>;

// p: rows, c.
@compute @workgroup_size(256)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let c = pu(1u);
    if (i >= pu(0u) * c) { return; }
    let j = i % c;
    let h = (x[i] - stats[j]) * stats[c + j];
    xhat[i] = h;
    y[i] = h * gamma[j] + beta[j];
}
