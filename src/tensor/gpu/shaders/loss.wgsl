// Cross-entropy rows: targets, logits (turned in place into the loss gradient) → row losses.
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> rowloss: array<f32>;

var<workgroup> red: array<f32, 64>;
var<workgroup> row_target: i32;

fn reduce_max(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (t < s) { red[t] = max(red[t], red[t + s]); }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

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

// One workgroup of 64 per row r of V logits: rowloss[r] = logsumexp(row) − row[target] (0 for an
// ignored target, −1); with the gradient, the row becomes (softmax − one_hot)·inv_count
// (zeros for an ignored target). p: rows, V, inv_count, with_grad.
@compute @workgroup_size(64)
fn ce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = flat_group(wid, nwg);
    if (r >= pu(0u)) { return; }
    let v = pu(1u);
    let ic = pf(2u);
    let with_grad = pu(3u) != 0u;
    let t = lid.x;
    let base = r * v;
    if (t == 0u) { row_target = bitcast<i32>(targets[r]); }
    // The same for the whole workgroup, so the reductions below stay in uniform control flow.
    let tgt = workgroupUniformLoad(&row_target);
    if (tgt < 0) {
        if (with_grad) {
            for (var j = t; j < v; j = j + 64u) { logits[base + j] = 0.0; }
        }
        if (t == 0u) { rowloss[r] = 0.0; }
        return;
    }
    var m = -3.4028235e38;
    for (var j = t; j < v; j = j + 64u) { m = max(m, logits[base + j]); }
    m = reduce_max(t, m);
    var s = 0.0;
    for (var j = t; j < v; j = j + 64u) { s = s + exp(logits[base + j] - m); }
    s = reduce_sum(t, s);
    let lse = m + log(s);
    let picked = logits[base + u32(tgt)];
    workgroupBarrier();
    if (t == 0u) { rowloss[r] = lse - picked; }
    if (with_grad) {
        for (var j = t; j < v; j = j + 64u) {
            var p = exp(logits[base + j] - lse) * ic;
            if (j == u32(tgt)) { p = p - ic; }
            logits[base + j] = p;
        }
    }
}
