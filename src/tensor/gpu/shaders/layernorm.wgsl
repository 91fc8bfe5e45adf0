// Layer normalisation of rows: x, gamma, beta → y, xhat, inverse std per row.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> xhat: array<f32>;
@group(0) @binding(6) var<storage, read_write> istd: array<f32>;

var<workgroup> red: array<f32, 64>;

fn reduce_sum(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (t < s) { red[t] = red[t] + red[t + s]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// One workgroup of 64 per row: mean and variance in two passes, then
// xhat = (x − mean)·istd and y = xhat·gamma + beta.  p: rows, c, eps.
@compute @workgroup_size(64)
fn rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = flat_group(wid, nwg);
    if (r >= pu(0u)) { return; }
    let c = pu(1u);
    let t = lid.x;
    let base = r * c;
    var s = 0.0;
    for (var j = t; j < c; j = j + 64u) { s = s + x[base + j]; }
    let mean = reduce_sum(t, s) / f32(c);
    var v = 0.0;
    for (var j = t; j < c; j = j + 64u) { let d = x[base + j] - mean; v = v + d * d; }
    let inv = inverseSqrt(reduce_sum(t, v) / f32(c) + pf(2u));
    for (var j = t; j < c; j = j + 64u) {
        let h = (x[base + j] - mean) * inv;
        xhat[base + j] = h;
        y[base + j] = h * gamma[j] + beta[j];
    }
    if (t == 0u) { istd[r] = inv; }
}
