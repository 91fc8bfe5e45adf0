// x → y, elementwise and shape kernels.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// tanh as the CPU engine computes it (ops/activation.rs `fast_tanh`: Eigen's rational
// approximation, exact for |x| < 4e-4).
fn tanh_cpu(v: f32) -> f32 {
    let c = clamp(v, -7.90531110763549805, 7.90531110763549805);
    let x2 = c * c;
    let p = ((((((-2.76076847742355e-16 * x2 + 2.00018790482477e-13) * x2 + -8.60467152213735e-11) * x2 + 5.12229709037114e-08) * x2 + 1.48572235717979e-05) * x2 + 6.37261928875436e-04) * x2 + 4.89352455891786e-03) * c;
    let q = ((1.19825839466702e-06 * x2 + 1.18534705686654e-04) * x2 + 2.26843463243900e-03) * x2 + 4.89352518554385e-03;
    return select(p / q, v, abs(v) < 0.0004);
}

// op: 0 copy, 1 tanh, 2 relu, 3 gelu, 4 sigmoid, 5 sin.
fn activate(op: u32, v: f32) -> f32 {
    switch op {
        case 1u: { return tanh_cpu(v); }
        case 2u: { return max(v, 0.0); }
        case 3u: { return gelu_f(v); }
        case 4u: { return sigmoid_f(v); }
        case 5u: { return sin(v); }
        default: { return v; }
    }
}

// y[i] = (accumulate ? y[i] : 0) + scale · op(x[i]).  p: n, op, accumulate, scale.
@compute @workgroup_size(256)
fn map(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    if (i >= pu(0u)) { return; }
    let v = pf(3u) * activate(pu(1u), x[i]);
    if (pu(2u) != 0u) { y[i] = y[i] + v; } else { y[i] = v; }
}

// y[i] = value (x unused).  p: n, value.
@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    _ = x[0];
    if (i >= pu(0u)) { return; }
    y[i] = pf(1u);
}

fn mix32(v: u32) -> u32 {
    var h = v;
    h ^= h >> 17u;
    h *= 0xed5ad4bbu;
    h ^= h >> 11u;
    h *= 0xac4c1b51u;
    h ^= h >> 15u;
    h *= 0x31848babu;
    h ^= h >> 14u;
    return h;
}

// Inverted dropout with a counter-based mask: value i is dropped when
// mix32(mix32(i ^ seed_lo) + seed_hi) < threshold (= p·2³²); kept values are scaled by keep.
// The same call masks the forward values and the backward gradients.
// p: n, seed_lo, seed_hi, threshold, keep, accumulate.
@compute @workgroup_size(256)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    if (i >= pu(0u)) { return; }
    let r = mix32(mix32(i ^ pu(1u)) + pu(2u));
    let v = select(x[i] * pf(4u), 0.0, r < pu(3u));
    if (pu(5u) != 0u) { y[i] = y[i] + v; } else { y[i] = v; }
}

// GLU over the last axis: y[r, j] = x[r, j]·σ(x[r, c + j]).  p: rows, c.
@compute @workgroup_size(256)
fn glu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let c = pu(1u);
    if (i >= pu(0u) * c) { return; }
    let r = i / c;
    let j = i % c;
    y[i] = x[r * 2u * c + j] * sigmoid_f(x[r * 2u * c + c + j]);
}

// Channels start..start+w_out of rows of w_in: y[r, j] = x[r, start + j].
// p: rows, w_in, start, w_out.
@compute @workgroup_size(256)
fn slice(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let wo = pu(3u);
    if (i >= pu(0u) * wo) { return; }
    let r = i / wo;
    y[i] = x[r * pu(1u) + pu(2u) + i % wo];
}

// The adjoint of `slice`: y[r, start + j] += x[r, j] (y has rows of w_in).
// p: rows, w_in, start, w_out.
@compute @workgroup_size(256)
fn slice_back(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let wo = pu(3u);
    if (i >= pu(0u) * wo) { return; }
    let r = i / wo;
    let d = r * pu(1u) + pu(2u) + i % wo;
    y[d] = y[d] + x[i];
}

// Generation's per-layer history: row `slot` of every sequence's ring (B, span, C) takes
// that sequence's input x (B, C) (y = the ring).  p: batch, c, span, slot.
@compute @workgroup_size(256)
fn ring_write(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let c = pu(1u);
    if (i >= pu(0u) * c) { return; }
    y[((i / c) * pu(2u) + pu(3u)) * c + i % c] = x[i];
}
