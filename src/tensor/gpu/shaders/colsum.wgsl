// Column sums in two deterministic passes: blocks of rows → partial sums, then the blocks
// in order. a, b → out.
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// out[blk, c] = Σ over rows r of block blk of term(r, c), with
// mode 0: a[r, c]; 1: a[r, c]·b[r, c]; 2: (a[r, c] − b[c])².
// p: rows, cols, rows_per_block, mode.
@compute @workgroup_size(256)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let rows = pu(0u);
    let cols = pu(1u);
    let per = pu(2u);
    let mode = pu(3u);
    let blocks = (rows + per - 1u) / per;
    if (i >= blocks * cols) { return; }
    let blk = i / cols;
    let c = i % cols;
    let end = min(rows, (blk + 1u) * per);
    var s = 0.0;
    var comp = 0.0;
    for (var r = blk * per; r < end; r = r + 1u) {
        let k = r * cols + c;
        var t: f32;
        if (mode == 0u) { t = a[k]; } else if (mode == 1u) { t = a[k] * b[k]; } else { let d = a[k] - b[c]; t = d * d; }
        // Kahan summation: the blocks are long when the batch is.
        let yk = t - comp;
        let tk = s + yk;
        comp = (tk - s) - yk;
        s = tk;
    }
    out[i] = s;
}

// out[off + c] = (accumulate ? out[off + c] : 0) + scale · Σ_blk a[blk, c] (b unused).
// p: blocks, cols, accumulate, scale, off.
@compute @workgroup_size(256)
fn finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = flat(wid, nwg, lid, 256u);
    let cols = pu(1u);
    _ = b[0];
    if (c >= cols) { return; }
    var s = 0.0;
    for (var k = 0u; k < pu(0u); k = k + 1u) {
        s = s + a[k * cols + c];
    }
    let v = pf(3u) * s;
    let o = pu(4u) + c;
    if (pu(2u) != 0u) { out[o] = out[o] + v; } else { out[o] = v; }
}
