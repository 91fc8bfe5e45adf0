// Sums of a vector: per-block partial sums, and a final sum into one slot of `out`.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, 256>;

fn reduce_sum(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (t < s) { red[t] = red[t] + red[t + s]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// Σ term(x[i]) over i in [start, end) by one workgroup, Kahan-compensated per invocation;
// mode 0: x, 1: x².
fn block_total(t: u32, start: u32, end: u32, mode: u32) -> f32 {
    var s = 0.0;
    var comp = 0.0;
    for (var i = start + t; i < end; i = i + 256u) {
        var v = x[i];
        if (mode == 1u) { v = v * v; }
        let yk = v - comp;
        let tk = s + yk;
        comp = (tk - s) - yk;
        s = tk;
    }
    return reduce_sum(t, s);
}

// out[out_off + blk] = Σ term over elements [blk·block, (blk+1)·block) of x[0..n).
// p: n, block, mode, out_off.
@compute @workgroup_size(256)
fn partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let blk = flat_group(wid, nwg);
    let n = pu(0u);
    let block = pu(1u);
    if (blk * block >= n) { return; }
    let s = block_total(lid.x, blk * block, min(n, (blk + 1u) * block), pu(2u));
    if (lid.x == 0u) { out[pu(3u) + blk] = s; }
}

// out[slot] = scale · Σ term(x[0..n)), one workgroup.  p: n, slot, scale, mode.
@compute @workgroup_size(256)
fn sum(@builtin(local_invocation_id) lid: vec3<u32>) {
    let s = block_total(lid.x, 0u, pu(0u), pu(3u));
    if (lid.x == 0u) { out[pu(1u)] = pf(2u) * s; }
}

// The step's status from the squared-norm partials x[0..n): status = out as
// [loss, grad norm, clip coefficient, skip, …]: norm = √Σ, coefficient = max_norm/(norm + 1e-6)
// (1 when not clipping or when that is not below 1), skip = 1 when the loss or the norm is
// not finite (the update must then leave everything as it was). p: n, max_norm (< 0: no clip).
@compute @workgroup_size(256)
fn status(@builtin(local_invocation_id) lid: vec3<u32>) {
    let s = block_total(lid.x, 0u, pu(0u), 0u);
    if (lid.x == 0u) {
        let norm = sqrt(s);
        out[1] = norm;
        let max_norm = pf(1u);
        var coef = 1.0;
        if (max_norm >= 0.0 && finite(norm)) {
            let c = max_norm / (norm + 1e-6);
            if (c < 1.0) { coef = c; }
        }
        out[2] = coef;
        out[3] = select(0.0, 1.0, !(finite(out[0]) && finite(norm)));
    }
}
