// Explicit columns for convolutions as GEMMs, and their adjoint as a gather (no atomics).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// p: 0 batch, 1 t_in, 2 c_in, 3 t_out, 4 stride, 5 pad_left, 6 dilation, 7 k, 8 groups,
//    9 cin_g (c_in / groups), 10 accumulate (col2im).

// cols (groups, batch·t_out, cin_g·k): cols[g, (b, to), ci·k + kk] = x[b, to·stride − pad +
// kk·dilation, g·cin_g + ci], zero outside the input.
@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let t_in = pu(1u);
    let c_in = pu(2u);
    let t_out = pu(3u);
    let k = pu(7u);
    let cin_g = pu(9u);
    let kg = cin_g * k;
    let rows = pu(0u) * t_out;
    if (i >= pu(8u) * rows * kg) { return; }
    let g = i / (rows * kg);
    let rem = i % (rows * kg);
    let row = rem / kg;
    let j = rem % kg;
    let b = row / t_out;
    let to = row % t_out;
    let t = i32(to * pu(4u) + (j % k) * pu(6u)) - i32(pu(5u));
    var v = 0.0;
    if (t >= 0 && u32(t) < t_in) { v = x[(b * t_in + u32(t)) * c_in + g * cin_g + j / k]; }
    y[i] = v;
}

// gx[b, t, c] (+)= Σ over the taps kk that read input t of some output to:
// cols[g, (b, to), ci·k + kk] (x = the columns' gradient, y = gx).
@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    let t_in = pu(1u);
    let c_in = pu(2u);
    let t_out = pu(3u);
    let stride = pu(4u);
    let k = pu(7u);
    let cin_g = pu(9u);
    let kg = cin_g * k;
    let rows = pu(0u) * t_out;
    if (i >= pu(0u) * t_in * c_in) { return; }
    let c = i % c_in;
    let t = (i / c_in) % t_in;
    let b = i / (c_in * t_in);
    let g = c / cin_g;
    let ci = c % cin_g;
    var s = 0.0;
    for (var kk = 0u; kk < k; kk = kk + 1u) {
        let num = i32(t + pu(5u)) - i32(kk * pu(6u));
        if (num < 0 || u32(num) % stride != 0u) { continue; }
        let to = u32(num) / stride;
        if (to >= t_out) { continue; }
        s = s + x[(g * rows + b * t_out + to) * kg + ci * k + kk];
    }
    if (pu(10u) != 0u) { y[i] = y[i] + s; } else { y[i] = s; }
}
