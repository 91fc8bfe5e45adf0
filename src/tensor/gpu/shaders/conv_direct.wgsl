// Direct convolutions (no GEMM): depthwise 1-D convs, transposed 1-D convs and PixelCNN's
// masked 2-D convs, forward and backward. Every output is one invocation's sum, in a fixed
// order: no atomics.
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn put(i: u32, v: f32, accumulate: bool) {
    if (accumulate) { y[i] = y[i] + v; } else { y[i] = v; }
}

// ---- depthwise 1-D (groups = c_in, each input channel feeding `mult` outputs) ----
// p: 0 batch, 1 t_in, 2 c_in, 3 t_out, 4 c_out, 5 stride, 6 pad_left, 7 dilation, 8 k,
//    9 has_bias, 10 accumulate / rows per block.

// a = x (B, T_in, C_in), b = w (C_out, 1, K), c = bias → y (B, T_out, C_out).
@compute @workgroup_size(256)
fn depthwise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let t_in = pu(1u);
    let c_in = pu(2u);
    let t_out = pu(3u);
    let c_out = pu(4u);
    let k = pu(8u);
    if (i >= pu(0u) * t_out * c_out) { return; }
    let co = i % c_out;
    let to = (i / c_out) % t_out;
    let bt = i / (c_out * t_out);
    let ci = co / (c_out / c_in);
    var s = 0.0;
    if (pu(9u) != 0u) { s = c[co]; }
    for (var kk = 0u; kk < k; kk = kk + 1u) {
        let t = i32(to * pu(5u) + kk * pu(7u)) - i32(pu(6u));
        if (t >= 0 && u32(t) < t_in) { s = s + b[co * k + kk] * a[(bt * t_in + u32(t)) * c_in + ci]; }
    }
    y[i] = s;
}

// a = g (B, T_out, C_out), b = w → y = gx (B, T_in, C_in).
@compute @workgroup_size(256)
fn depthwise_back_x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let t_in = pu(1u);
    let c_in = pu(2u);
    let t_out = pu(3u);
    let c_out = pu(4u);
    let stride = pu(5u);
    let k = pu(8u);
    _ = c[0];
    if (i >= pu(0u) * t_in * c_in) { return; }
    let ci = i % c_in;
    let t = (i / c_in) % t_in;
    let bt = i / (c_in * t_in);
    let mult = c_out / c_in;
    var s = 0.0;
    for (var m = 0u; m < mult; m = m + 1u) {
        let co = ci * mult + m;
        for (var kk = 0u; kk < k; kk = kk + 1u) {
            let num = i32(t + pu(6u)) - i32(kk * pu(7u));
            if (num < 0 || u32(num) % stride != 0u) { continue; }
            let to = u32(num) / stride;
            if (to < t_out) { s = s + b[co * k + kk] * a[(bt * t_out + to) * c_out + co]; }
        }
    }
    put(i, s, pu(10u) != 0u);
}

// a = g, b = x → y = partial sums (blocks of rows, C_out·K) of the weight gradient.
@compute @workgroup_size(256)
fn depthwise_back_w(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let t_in = pu(1u);
    let c_in = pu(2u);
    let t_out = pu(3u);
    let c_out = pu(4u);
    let k = pu(8u);
    let per = pu(10u);
    let rows = pu(0u) * t_out;
    let blocks = (rows + per - 1u) / per;
    _ = c[0];
    if (i >= blocks * c_out * k) { return; }
    let blk = i / (c_out * k);
    let co = (i / k) % c_out;
    let kk = i % k;
    let ci = co / (c_out / c_in);
    var s = 0.0;
    for (var r = blk * per; r < min(rows, (blk + 1u) * per); r = r + 1u) {
        let bt = r / t_out;
        let to = r % t_out;
        let t = i32(to * pu(5u) + kk * pu(7u)) - i32(pu(6u));
        if (t >= 0 && u32(t) < t_in) { s = s + a[r * c_out + co] * b[(bt * t_in + u32(t)) * c_in + ci]; }
    }
    y[i] = s;
}

// ---- transposed 1-D: output to = ti·stride − pad + kk·dilation ----
// p: 0 batch, 1 t_in, 2 c_in, 3 t_out, 4 c_out, 5 stride, 6 pad, 7 dilation, 8 k, 9 groups,
//    10 has_bias, 11 accumulate.

// a = x (B, T_in, C_in), b = w (C_in, C_out/groups, K), c = bias → y (B, T_out, C_out).
@compute @workgroup_size(256)
fn conv_t(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let t_in = pu(1u);
    let c_in = pu(2u);
    let t_out = pu(3u);
    let c_out = pu(4u);
    let stride = pu(5u);
    let k = pu(8u);
    let groups = pu(9u);
    if (i >= pu(0u) * t_out * c_out) { return; }
    let co = i % c_out;
    let to = (i / c_out) % t_out;
    let bt = i / (c_out * t_out);
    let cout_g = c_out / groups;
    let cin_g = c_in / groups;
    let g = co / cout_g;
    let col = co % cout_g;
    var s = 0.0;
    if (pu(10u) != 0u) { s = c[co]; }
    for (var kk = 0u; kk < k; kk = kk + 1u) {
        let num = i32(to + pu(6u)) - i32(kk * pu(7u));
        if (num < 0 || u32(num) % stride != 0u) { continue; }
        let ti = u32(num) / stride;
        if (ti >= t_in) { continue; }
        for (var ci = g * cin_g; ci < (g + 1u) * cin_g; ci = ci + 1u) {
            s = s + a[(bt * t_in + ti) * c_in + ci] * b[(ci * cout_g + col) * k + kk];
        }
    }
    y[i] = s;
}

// a = g (B, T_out, C_out), b = w → y = gx (B, T_in, C_in).
@compute @workgroup_size(256)
fn conv_t_back_x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let t_in = pu(1u);
    let c_in = pu(2u);
    let t_out = pu(3u);
    let c_out = pu(4u);
    let k = pu(8u);
    let groups = pu(9u);
    _ = c[0];
    if (i >= pu(0u) * t_in * c_in) { return; }
    let ci = i % c_in;
    let ti = (i / c_in) % t_in;
    let bt = i / (c_in * t_in);
    let cout_g = c_out / groups;
    let g = ci / (c_in / groups);
    var s = 0.0;
    for (var kk = 0u; kk < k; kk = kk + 1u) {
        let to = i32(ti * pu(5u) + kk * pu(7u)) - i32(pu(6u));
        if (to < 0 || u32(to) >= t_out) { continue; }
        for (var col = 0u; col < cout_g; col = col + 1u) {
            s = s + a[(bt * t_out + u32(to)) * c_out + g * cout_g + col] * b[(ci * cout_g + col) * k + kk];
        }
    }
    put(i, s, pu(11u) != 0u);
}

// a = g, b = x → y = gw (C_in, C_out/groups, K).
@compute @workgroup_size(256)
fn conv_t_back_w(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let t_in = pu(1u);
    let c_in = pu(2u);
    let t_out = pu(3u);
    let c_out = pu(4u);
    let k = pu(8u);
    let groups = pu(9u);
    let cout_g = c_out / groups;
    _ = c[0];
    if (i >= c_in * cout_g * k) { return; }
    let kk = i % k;
    let col = (i / k) % cout_g;
    let ci = i / (k * cout_g);
    let co = (ci / (c_in / groups)) * cout_g + col;
    var s = 0.0;
    for (var bt = 0u; bt < pu(0u); bt = bt + 1u) {
        for (var ti = 0u; ti < t_in; ti = ti + 1u) {
            let to = i32(ti * pu(5u) + kk * pu(7u)) - i32(pu(6u));
            if (to < 0 || u32(to) >= t_out) { continue; }
            s = s + a[(bt * t_out + u32(to)) * c_out + co] * b[(bt * t_in + ti) * c_in + ci];
        }
    }
    put(i, s, pu(11u) != 0u);
}

// ---- PixelCNN masked 2-D, padding (kh/2, kw/2) ----
// p: 0 batch, 1 height, 2 width, 3 c_in, 4 c_out, 5 kh, 6 kw, 7 mask B (centre kept),
//    8 has_bias, 9 accumulate.

fn kept(a_: u32, e: u32) -> bool {
    let ch = pu(5u) / 2u;
    let cw = pu(6u) / 2u;
    return a_ < ch || (a_ == ch && e < cw + pu(7u));
}

// a = x (B, H, W, C_in), b = w (C_out, C_in, kh, kw), c = bias → y (B, H, W, C_out).
@compute @workgroup_size(256)
fn masked2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let h = pu(1u);
    let w = pu(2u);
    let c_in = pu(3u);
    let c_out = pu(4u);
    let kh = pu(5u);
    let kw = pu(6u);
    if (i >= pu(0u) * h * w * c_out) { return; }
    let co = i % c_out;
    let px = i / c_out;
    let j = px % w;
    let r = (px / w) % h;
    let bt = px / (w * h);
    var s = 0.0;
    if (pu(8u) != 0u) { s = c[co]; }
    for (var a_ = 0u; a_ < kh; a_ = a_ + 1u) {
        for (var e = 0u; e < kw; e = e + 1u) {
            if (!kept(a_, e)) { continue; }
            let rr = i32(r + a_) - i32(kh / 2u);
            let jj = i32(j + e) - i32(kw / 2u);
            if (rr < 0 || u32(rr) >= h || jj < 0 || u32(jj) >= w) { continue; }
            let xb = ((bt * h + u32(rr)) * w + u32(jj)) * c_in;
            for (var ci = 0u; ci < c_in; ci = ci + 1u) {
                s = s + a[xb + ci] * b[((co * c_in + ci) * kh + a_) * kw + e];
            }
        }
    }
    y[i] = s;
}

// a = g (B, H, W, C_out), b = w → y = gx (B, H, W, C_in).
@compute @workgroup_size(256)
fn masked2d_back_x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let h = pu(1u);
    let w = pu(2u);
    let c_in = pu(3u);
    let c_out = pu(4u);
    let kh = pu(5u);
    let kw = pu(6u);
    _ = c[0];
    if (i >= pu(0u) * h * w * c_in) { return; }
    let ci = i % c_in;
    let px = i / c_in;
    let j = px % w;
    let r = (px / w) % h;
    let bt = px / (w * h);
    var s = 0.0;
    for (var a_ = 0u; a_ < kh; a_ = a_ + 1u) {
        for (var e = 0u; e < kw; e = e + 1u) {
            if (!kept(a_, e)) { continue; }
            // Output (rr, jj) read this input through tap (a_, e).
            let rr = i32(r + kh / 2u) - i32(a_);
            let jj = i32(j + kw / 2u) - i32(e);
            if (rr < 0 || u32(rr) >= h || jj < 0 || u32(jj) >= w) { continue; }
            let gb = ((bt * h + u32(rr)) * w + u32(jj)) * c_out;
            for (var co = 0u; co < c_out; co = co + 1u) {
                s = s + a[gb + co] * b[((co * c_in + ci) * kh + a_) * kw + e];
            }
        }
    }
    put(i, s, pu(9u) != 0u);
}

// a = g, b = x → y = gw (C_out, C_in, kh, kw); masked-out taps get nothing.
@compute @workgroup_size(256)
fn masked2d_back_w(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let h = pu(1u);
    let w = pu(2u);
    let c_in = pu(3u);
    let c_out = pu(4u);
    let kh = pu(5u);
    let kw = pu(6u);
    _ = c[0];
    if (i >= c_out * c_in * kh * kw) { return; }
    let e = i % kw;
    let a_ = (i / kw) % kh;
    let ci = (i / (kw * kh)) % c_in;
    let co = i / (kw * kh * c_in);
    var s = 0.0;
    if (kept(a_, e)) {
        for (var bt = 0u; bt < pu(0u); bt = bt + 1u) {
            for (var r = 0u; r < h; r = r + 1u) {
                let rr = i32(r + a_) - i32(kh / 2u);
                if (rr < 0 || u32(rr) >= h) { continue; }
                for (var j = 0u; j < w; j = j + 1u) {
                    let jj = i32(j + e) - i32(kw / 2u);
                    if (jj < 0 || u32(jj) >= w) { continue; }
                    s = s + a[((bt * h + r) * w + j) * c_out + co] * b[((bt * h + u32(rr)) * w + u32(jj)) * c_in + ci];
                }
            }
        }
    }
    put(i, s, pu(9u) != 0u);
}

// ---- one position of a causal conv from its ring of past inputs (generation) ----
// a = ring (B, span, C_in) holding input time τ at row τ mod span, b = w (C_out, C_in/groups,
// K), c = bias → y (B, C_out) at time `position`; taps before time 0 read the left padding.
// p: 0 batch, 1 c_in, 2 c_out, 3 k, 4 dilation, 5 groups, 6 span, 7 position, 8 has_bias.
@compute @workgroup_size(256)
fn ring_conv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let c_in = pu(1u);
    let c_out = pu(2u);
    let k = pu(3u);
    let groups = pu(5u);
    let span = pu(6u);
    let pos = pu(7u);
    if (i >= pu(0u) * c_out) { return; }
    let co = i % c_out;
    let bt = i / c_out;
    let cin_g = c_in / groups;
    let g = co / (c_out / groups);
    var s = 0.0;
    if (pu(8u) != 0u) { s = c[co]; }
    for (var kk = 0u; kk < k; kk = kk + 1u) {
        let lag = (k - 1u - kk) * pu(4u);
        if (lag > pos) { continue; }
        let row = ((bt * span + (pos - lag) % span) * c_in) + g * cin_g;
        for (var ci = 0u; ci < cin_g; ci = ci + 1u) {
            s = s + b[(co * cin_g + ci) * k + kk] * a[row + ci];
        }
    }
    y[i] = s;
}
