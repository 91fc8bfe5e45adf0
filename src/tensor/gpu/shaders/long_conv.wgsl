// Hyena's long causal convolution, direct form: y[b, t, c] = d[c]·u[b, t, c] +
// Σ_{s ≤ t} h[t − s, c]·u[b, s, c], with the filter h (T, C) indexed by lag. Neighbouring
// invocations take neighbouring channels, so every load is contiguous across them.
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// p: 0 batch, 1 len, 2 channels, 3 accumulate.

// a = u (B, T, C), b = h (T, C), c = d (C) → y (B, T, C).
@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let len = pu(1u);
    let ch = pu(2u);
    if (i >= pu(0u) * len * ch) { return; }
    let cc = i % ch;
    let t = (i / ch) % len;
    let row0 = (i / (ch * len)) * len;
    var s = c[cc] * a[i];
    for (var k = 0u; k <= t; k = k + 1u) {
        s = s + b[(t - k) * ch + cc] * a[(row0 + k) * ch + cc];
    }
    y[i] = s;
}

// a = g (B, T, C), b = h, c = d → y = gu: gu[b, s, c] (+)= d[c]·g[b, s, c] +
// Σ_{t ≥ s} h[t − s, c]·g[b, t, c].
@compute @workgroup_size(256)
fn back_u(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let len = pu(1u);
    let ch = pu(2u);
    if (i >= pu(0u) * len * ch) { return; }
    let cc = i % ch;
    let s0 = (i / ch) % len;
    let row0 = (i / (ch * len)) * len;
    var s = c[cc] * a[i];
    for (var t = s0; t < len; t = t + 1u) {
        s = s + b[(t - s0) * ch + cc] * a[(row0 + t) * ch + cc];
    }
    if (pu(3u) != 0u) { y[i] = y[i] + s; } else { y[i] = s; }
}

// a = g, b = u → y = gh (T, C): gh[lag, c] (+)= Σ_b Σ_{t ≥ lag} g[b, t, c]·u[b, t − lag, c].
@compute @workgroup_size(256)
fn back_h(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let len = pu(1u);
    let ch = pu(2u);
    _ = c[0];
    if (i >= len * ch) { return; }
    let cc = i % ch;
    let lag = i / ch;
    var s = 0.0;
    for (var bt = 0u; bt < pu(0u); bt = bt + 1u) {
        let row0 = bt * len;
        for (var t = lag; t < len; t = t + 1u) {
            s = s + a[(row0 + t) * ch + cc] * b[(row0 + t - lag) * ch + cc];
        }
    }
    if (pu(3u) != 0u) { y[i] = y[i] + s; } else { y[i] = s; }
}

// One position t of the long convolution from the inputs so far (generation):
// a = history (B, max_len, C), b = h (max_len, C), c = d (C) → y (B, C):
// y[b, c] = d[c]·u[b, t, c] + Σ_{s ≤ t} h[t − s, c]·u[b, s, c].  p: batch, max_len, channels, t.
@compute @workgroup_size(256)
fn step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let len = pu(1u);
    let ch = pu(2u);
    let t = pu(3u);
    if (i >= pu(0u) * ch) { return; }
    let cc = i % ch;
    let row0 = (i / ch) * len;
    var s = c[cc] * a[(row0 + t) * ch + cc];
    for (var k = 0u; k <= t; k = k + 1u) {
        s = s + b[(t - k) * ch + cc] * a[(row0 + k) * ch + cc];
    }
    y[i] = s;
}
