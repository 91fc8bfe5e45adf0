// C = A·B (+ bias per column) over a batch of z independent products, with any strides, so
// that transposed operands, channel groups and column windows need no copies.
// A(m, k) = a[a_off + z·a_zs + m·a_rs + k·a_cs], B(k, n) = b[b_off + z·b_zs + k·b_rs + n·b_cs],
// C(m, n) = c[c_off + z·c_zs + m·c_rs + n].
// p: 0 m, 1 n, 2 k, 3 a_off, 4 a_rs, 5 a_cs, 6 a_zs, 7 b_off, 8 b_rs, 9 b_cs, 10 b_zs,
//    11 c_off, 12 c_rs, 13 c_zs, 14 flags (1 accumulate into C, 2 add bias), 15 bias_off,
//    16 bias_zs.
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
// Tiles in workgroup memory, k-major: As[kk·TM + row], Bs[kk·TN + col].
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

// A 64×64 tile of C per workgroup of 16×16 invocations, each computing a 4×4 block of rows
// ty + 16i and columns tx + 16j (so that neighbouring invocations read neighbouring values).
@compute @workgroup_size(16, 16, 1)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = pu(0u);
    let n = pu(1u);
    let kdim = pu(2u);
    let z = wid.z;
    let a_base = pu(3u) + z * pu(6u);
    let a_rs = pu(4u);
    let a_cs = pu(5u);
    let b_base = pu(7u) + z * pu(10u);
    let b_rs = pu(8u);
    let b_cs = pu(9u);
    let row0 = wid.y * TM;
    let col0 = wid.x * TN;
    let tx = lid.x;
    let ty = lid.y;
    let t = ty * 16u + tx;
    // Load order: along whichever axis is contiguous in memory.
    let a_k_major = a_cs == 1u;
    let b_n_major = b_cs == 1u;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) { acc[i] = 0.0; }
    for (var k0 = 0u; k0 < kdim; k0 = k0 + TK) {
        for (var l = 0u; l < 4u; l = l + 1u) {
            let e = t + l * 256u;
            var row: u32;
            var kk: u32;
            if (a_k_major) { row = e / TK; kk = e % TK; } else { row = e % TM; kk = e / TM; }
            let gr = row0 + row;
            let gk = k0 + kk;
            var v = 0.0;
            if (gr < m && gk < kdim) { v = a[a_base + gr * a_rs + gk * a_cs]; }
            As[kk * TM + row] = v;
            var col: u32;
            var kb: u32;
            if (b_n_major) { col = e % TN; kb = e / TN; } else { col = e / TK; kb = e % TK; }
            let gc = col0 + col;
            let gkb = k0 + kb;
            var w = 0.0;
            if (gc < n && gkb < kdim) { w = b[b_base + gkb * b_rs + gc * b_cs]; }
            Bs[kb * TN + col] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            var ar: array<f32, 4>;
            var br: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                ar[i] = As[kk * TM + ty + 16u * i];
                br[i] = Bs[kk * TN + tx + 16u * i];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i * 4u + j] = fma(ar[i], br[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    let c_base = pu(11u) + z * pu(13u);
    let c_rs = pu(12u);
    let flags = pu(14u);
    let bias_base = pu(15u) + z * pu(16u);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = row0 + ty + 16u * i;
        if (r >= m) { continue; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = col0 + tx + 16u * j;
            if (col >= n) { continue; }
            var v = acc[i * 4u + j];
            if ((flags & 2u) != 0u) { v = v + bias[bias_base + col]; }
            let idx = c_base + r * c_rs + col;
            if ((flags & 1u) != 0u) { c[idx] = c[idx] + v; } else { c[idx] = v; }
        }
    }
}

// The same product without workgroup memory or barriers: each invocation computes a 4×4
// block straight from the operands. Software adapters (llvmpipe) run barriers as context
// switches between invocations, which makes the tiled kernel ~20× slower there; GPUs run
// the tiled one. Workgroups of 8×8 invocations cover 32×32 tiles.
@compute @workgroup_size(8, 8, 1)
fn gemm_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = pu(0u);
    let n = pu(1u);
    let kdim = pu(2u);
    let z = wid.z;
    let a_base = pu(3u) + z * pu(6u);
    let a_rs = pu(4u);
    let a_cs = pu(5u);
    let b_base = pu(7u) + z * pu(10u);
    let b_rs = pu(8u);
    let b_cs = pu(9u);
    let row0 = wid.y * 32u + lid.y;
    let col0 = wid.x * 32u + lid.x;
    var rows: array<u32, 4>;
    var cols: array<u32, 4>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        rows[i] = min(row0 + 8u * i, m - 1u);
        cols[i] = min(col0 + 8u * i, n - 1u);
    }
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) { acc[i] = 0.0; }
    for (var kk = 0u; kk < kdim; kk = kk + 1u) {
        var ar: array<f32, 4>;
        var br: array<f32, 4>;
        for (var i = 0u; i < 4u; i = i + 1u) {
            ar[i] = a[a_base + rows[i] * a_rs + kk * a_cs];
            br[i] = b[b_base + kk * b_rs + cols[i] * b_cs];
        }
        for (var i = 0u; i < 4u; i = i + 1u) {
            for (var j = 0u; j < 4u; j = j + 1u) {
                acc[i * 4u + j] = fma(ar[i], br[j], acc[i * 4u + j]);
            }
        }
    }
    let c_base = pu(11u) + z * pu(13u);
    let c_rs = pu(12u);
    let flags = pu(14u);
    let bias_base = pu(15u) + z * pu(16u);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = row0 + 8u * i;
        if (r >= m) { continue; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = col0 + 8u * j;
            if (col >= n) { continue; }
            var v = acc[i * 4u + j];
            if ((flags & 2u) != 0u) { v = v + bias[bias_base + col]; }
            let idx = c_base + r * c_rs + col;
            if ((flags & 1u) != 0u) { c[idx] = c[idx] + v; } else { c[idx] = v; }
        }
    }
}
