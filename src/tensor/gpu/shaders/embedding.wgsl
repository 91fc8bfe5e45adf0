// Embedding lookup and its gradient: table/g, index, out.
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> index: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

// dst[i, e] = src[ids[i], e].  p: n_ids, width.
@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let e = pu(1u);
    if (i >= pu(0u) * e) { return; }
    dst[i] = src[index[i / e] * e + i % e];
}

// The table's gradient without float atomics: the host sorted the positions by token id
// (stable, so each id's positions stay in order), index = [perm (n_ids) | segment starts
// (n_uniq + 1) | unique ids (n_uniq)]; one invocation per (unique id, column) adds its
// positions' gradient rows in order, then adds that sum to dst (the table's gradient).
// p: n_uniq, width, n_ids, accumulate.
@compute @workgroup_size(256)
fn scatter_sorted(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let nu = pu(0u);
    let e = pu(1u);
    let n = pu(2u);
    if (i >= nu * e) { return; }
    let u = i / e;
    let col = i % e;
    var s = 0.0;
    for (var k = index[n + u]; k < index[n + u + 1u]; k = k + 1u) {
        s = s + src[index[k] * e + col];
    }
    let d = index[n + nu + 1u + u] * e + col;
    if (pu(3u) != 0u) { dst[d] = dst[d] + s; } else { dst[d] = s; }
}
