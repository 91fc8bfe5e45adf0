// Optimizer updates with PyTorch's rounding (optim/kernels.rs): param, grad, first moment
// (momentum buffer), second moment, step status. The status is [loss, grad norm, clip
// coefficient, skip, first bad parameter, …] as u32 words: an update is skipped when the
// loss or the gradient norm is not finite, gradients are scaled by the clip coefficient when
// it is below 1, and a parameter that is not finite afterwards records its index (atomicMin:
// the first in store order wins, whatever the schedule).
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> status: array<atomic<u32>>;

fn clipped(i: u32) -> f32 {
    let coef = bitcast<f32>(atomicLoad(&status[2]));
    return select(g[i], g[i] * coef, coef < 1.0);
}

fn check(x: f32) {
    if (!finite(x)) { atomicMin(&status[4], pu(10u)); }
}

// Adam / AdamW. p: 0 n, 1 decay (0 none, 1 L2, 2 decoupled), 2 lerp weight, 3 beta2,
// 4 1 − beta2, 5 √(1 − beta2^t), 6 eps, 7 −lr/(1 − beta1^t), 8 weight decay, 9 1 − lr·wd,
// 10 parameter index.
@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    if (i >= pu(0u) || atomicLoad(&status[3]) != 0u) { return; }
    let decay = pu(1u);
    var gi = clipped(i);
    var pi = p[i];
    if (decay == 1u) { gi = fma(pi, pf(8u), gi); }
    if (decay == 2u) { pi = pi * pf(9u); }
    let w = pf(2u);
    let diff = gi - m[i];
    var mi: f32;
    if (abs(w) < 0.5) { mi = fma(w, diff, m[i]); } else { mi = fma(w - 1.0, diff, gi); }
    m[i] = mi;
    let vi = v[i] * pf(3u) + pf(4u) * gi * gi;
    v[i] = vi;
    let denom = sqrt(vi) / pf(5u) + pf(6u);
    pi = pi + pf(7u) * mi / denom;
    p[i] = pi;
    check(pi);
}

// SGD with optional momentum (dampening 0, not Nesterov). p: 0 n, 1 L2 decay, 2 momentum
// (0: none), 3 momentum factor, 4 −lr, 5 first step, 8 weight decay, 10 parameter index.
@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    _ = v[0];
    if (i >= pu(0u) || atomicLoad(&status[3]) != 0u) { return; }
    var d = clipped(i);
    var pi = p[i];
    if (pu(1u) != 0u) { d = fma(pi, pf(8u), d); }
    if (pu(2u) != 0u) {
        var b = d;
        if (pu(5u) == 0u) { b = m[i] * pf(3u) + d; }
        m[i] = b;
        pi = fma(b, pf(4u), pi);
    } else {
        pi = fma(d, pf(4u), pi);
    }
    p[i] = pi;
    check(pi);
}

// The moving average of a parameter: m.lerp_(g, w) as ATen rounds it, where g binds the
// parameter's current value and m its average. p: 0 n, 2 weight (1 − decay). Skipped with
// the update.
@compute @workgroup_size(256)
fn average(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat(wid, nwg, lid, 256u);
    _ = p[0];
    _ = v[0];
    if (i >= pu(0u) || atomicLoad(&status[3]) != 0u) { return; }
    let w = pf(2u);
    let diff = g[i] - m[i];
    if (abs(w) < 0.5) { m[i] = fma(w, diff, m[i]); } else { m[i] = fma(w - 1.0, diff, g[i]); }
}
