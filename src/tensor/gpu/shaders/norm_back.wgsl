// Input gradients of the normalisations: g, xhat, statistics, gamma → gx.
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> xhat: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> gx: array<f32>;

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

fn put(i: u32, v: f32, accumulate: bool) {
    if (accumulate) { gx[i] = gx[i] + v; } else { gx[i] = v; }
}

// LayerNorm, one workgroup per row (stats = istd per row):
// gx = istd·(g·γ − mean(g·γ) − xhat·mean(g·γ·xhat)).  p: rows, c, accumulate.
@compute @workgroup_size(64)
fn layernorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = flat_group(wid, nwg);
    if (r >= pu(0u)) { return; }
    let c = pu(1u);
    let t = lid.x;
    let base = r * c;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var j = t; j < c; j = j + 64u) {
        let d = g[base + j] * gamma[j];
        s1 = s1 + d;
        s2 = s2 + d * xhat[base + j];
    }
    let m1 = reduce_sum(t, s1) / f32(c);
    let m2 = reduce_sum(t, s2) / f32(c);
    let inv = stats[r];
    let acc = pu(2u) != 0u;
    for (var j = t; j < c; j = j + 64u) {
        put(base + j, inv * (g[base + j] * gamma[j] - m1 - xhat[base + j] * m2), acc);
    }
}

// BatchNorm, one invocation per value; stats = [istd (C) | Σg (C) | Σg·xhat (C)] (the sums
// only in training mode, where the batch statistics depend on x):
// training gx = istd·γ·(g − Σg/n − xhat·Σg·xhat/n), eval gx = g·γ·istd.
// p: rows, c, accumulate, training.
@compute @workgroup_size(256)
fn batchnorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let n = pu(0u);
    let c = pu(1u);
    if (i >= n * c) { return; }
    let j = i % c;
    var v: f32;
    if (pu(3u) != 0u) {
        let nf = f32(n);
        v = stats[j] * gamma[j] * (g[i] - stats[c + j] / nf - xhat[i] * stats[2u * c + j] / nf);
    } else {
        v = g[i] * gamma[j] * stats[j];
    }
    put(i, v, pu(2u) != 0u);
}
