// a, b → y, elementwise.
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// op: 0 a + b, 1 a·b, and the activations' backward rules with a = the output's gradient
// and b = the saved value they need: 2 tanh (b = output), 3 relu (b = input),
// 4 gelu (b = input), 5 sigmoid (b = output), 6 sin (b = input).
fn combine(op: u32, u: f32, v: f32) -> f32 {
    switch op {
        case 0u: { return u + v; }
        case 1u: { return u * v; }
        case 2u: { return u * (1.0 - v * v); }
        case 3u: { return select(0.0, u, v > 0.0); }
        case 4u: { return u * gelu_grad_f(v); }
        case 5u: { return u * (v * (1.0 - v)); }
        case 6u: { return u * cos(v); }
        default: { return 0.0; }
    }
}

// y[i] = (accumulate ? y[i] : 0) + op(a[i], b[i]).  p: n, op, accumulate.
@compute @workgroup_size(256)
fn zip(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    if (i >= pu(0u)) { return; }
    let v = combine(pu(1u), a[i], b[i]);
    if (pu(2u) != 0u) { y[i] = y[i] + v; } else { y[i] = v; }
}

// y[r, c] (+)= a[r, c]·b[c].  p: rows, c, accumulate.
@compute @workgroup_size(256)
fn channel_mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let c = pu(1u);
    if (i >= pu(0u) * c) { return; }
    let v = a[i] * b[i % c];
    if (pu(2u) != 0u) { y[i] = y[i] + v; } else { y[i] = v; }
}

// GLU backward: a = g (rows, c), b = x (rows, 2c), y = gx (rows, 2c), both halves.
// p: rows, c, accumulate.
@compute @workgroup_size(256)
fn glu_back(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let c = pu(1u);
    if (i >= pu(0u) * c) { return; }
    let r = i / c;
    let j = i % c;
    let lo = r * 2u * c + j;
    let s = sigmoid_f(b[lo + c]);
    let g = a[i];
    let d_lo = g * s;
    let d_hi = g * b[lo] * s * (1.0 - s);
    if (pu(2u) != 0u) {
        y[lo] = y[lo] + d_lo;
        y[lo + c] = y[lo + c] + d_hi;
    } else {
        y[lo] = d_lo;
        y[lo + c] = d_hi;
    }
}
