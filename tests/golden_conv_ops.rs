//! The convolution kernels against PyTorch: every case of ../shared/golden/conv_ops.json
//! (forward output and all gradients, computed in float64), plus the error paths.

use convlm::tensor::kernels::conv1d::{conv1d_backward, conv1d_backward_hinted, conv1d_forward, conv_output_len, Conv1dSpec, Padding};
use convlm::tensor::kernels::conv2d_masked::{masked_conv2d_backward, masked_conv2d_forward, pixelcnn_mask, MaskType, MaskedConv2dSpec};
use convlm::tensor::kernels::conv_transpose1d::{conv_transpose1d_backward, conv_transpose1d_forward, conv_transpose_output_len, ConvTranspose1dSpec};
use convlm::Result;
use serde_json::Value;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden/conv_ops.json");
const CASES: usize = 31;

/// A golden tensor: shape and row-major data (channels-first, PyTorch layout).
struct Golden {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Golden {
    fn parse(v: &Value) -> Option<Golden> {
        let shape = v.get("shape")?.as_array()?.iter().map(|d| d.as_u64().map(|d| d as usize)).collect::<Option<_>>()?;
        let data = v.get("data")?.as_array()?.iter().map(Value::as_f64).collect::<Option<_>>()?;
        Some(Golden { shape, data })
    }

    fn f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }

    /// (N, C, spatial...) → (N, spatial..., C).
    fn channels_last(&self) -> Vec<f64> {
        let (n, c) = (self.shape[0], self.shape[1]);
        let s: usize = self.shape[2..].iter().product();
        let mut out = vec![0.0; self.data.len()];
        for b in 0..n {
            for ch in 0..c {
                for p in 0..s {
                    out[(b * s + p) * c + ch] = self.data[(b * c + ch) * s + p];
                }
            }
        }
        out
    }
}

/// One case's op, with batch and spatial sizes of its input.
enum Op {
    Conv1d(Conv1dSpec, usize, usize),
    ConvT1d(ConvTranspose1dSpec, usize, usize),
    Masked(MaskedConv2dSpec, usize, usize, usize),
}

impl Op {
    fn parse(case: &Value, x: &Golden, w: &Golden, y: &Golden) -> Op {
        let p = &case["params"];
        let int = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("param {k}")) as usize;
        match case["op"].as_str() {
            Some("conv1d") => {
                let padding = match &p["padding"] {
                    Value::Array(lr) => Padding::Asymmetric { left: lr[0].as_u64().unwrap() as usize, right: lr[1].as_u64().unwrap() as usize },
                    v => Padding::Symmetric(v.as_u64().unwrap() as usize),
                };
                let spec = Conv1dSpec {
                    in_channels: x.shape[1],
                    out_channels: w.shape[0],
                    kernel_size: w.shape[2],
                    stride: int("stride"),
                    padding,
                    dilation: int("dilation"),
                    groups: int("groups"),
                };
                Op::Conv1d(spec, x.shape[0], x.shape[2])
            }
            Some("conv_transpose1d") => {
                let spec = ConvTranspose1dSpec {
                    in_channels: x.shape[1],
                    out_channels: y.shape[1],
                    kernel_size: w.shape[2],
                    stride: int("stride"),
                    padding: int("padding"),
                    output_padding: int("output_padding"),
                    dilation: int("dilation"),
                    groups: int("groups"),
                };
                Op::ConvT1d(spec, x.shape[0], x.shape[2])
            }
            Some("conv2d_masked") => {
                let mask = if p["mask_type"] == "A" { MaskType::A } else { MaskType::B };
                let spec = MaskedConv2dSpec { in_channels: x.shape[1], out_channels: w.shape[0], kernel_h: w.shape[2], kernel_w: w.shape[3], mask };
                let want_mask = Golden::parse(&case["mask"]).expect("mask").f32();
                assert_eq!(pixelcnn_mask(spec.kernel_h, spec.kernel_w, mask), want_mask, "pixelcnn_mask");
                Op::Masked(spec, x.shape[0], x.shape[2], x.shape[3])
            }
            other => panic!("unknown op {other:?}"),
        }
    }

    fn forward(&self, x: &[f32], w: &[f32], b: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
        match *self {
            Op::Conv1d(ref s, n, l) => conv1d_forward(s, x, n, l, w, b, out),
            Op::ConvT1d(ref s, n, l) => conv_transpose1d_forward(s, x, n, l, w, b, out),
            Op::Masked(ref s, n, h, wd) => masked_conv2d_forward(s, x, n, h, wd, w, b, out),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn backward(&self, x: &[f32], w: &[f32], go: &[f32], gx: &mut [f32], gw: &mut [f32], gb: Option<&mut [f32]>) -> Result<()> {
        match *self {
            Op::Conv1d(ref s, n, l) => conv1d_backward(s, x, n, l, w, go, Some(gx), Some(gw), gb),
            Op::ConvT1d(ref s, n, l) => conv_transpose1d_backward(s, x, n, l, w, go, Some(gx), Some(gw), gb),
            Op::Masked(ref s, n, h, wd) => masked_conv2d_backward(s, x, n, h, wd, w, go, Some(gx), Some(gw), gb),
        }
    }
}

struct Tol {
    atol: f64,
    rtol: f64,
}

/// Largest |got - scale*want| and whether every element is within tolerance.
fn compare(got: &[f32], want: &[f64], scale: f64, tol: &Tol) -> (f64, bool) {
    assert_eq!(got.len(), want.len(), "length");
    got.iter().zip(want).fold((0.0, true), |(worst, ok), (&g, &w)| {
        let (w, err) = (scale * w, (g as f64 - scale * w).abs());
        (worst.max(err), ok && err <= tol.atol + tol.rtol * w.abs())
    })
}

/// A parsed golden case with inputs converted to channels-last.
struct Case {
    name: String,
    op: Op,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Option<Vec<f32>>,
    r: Vec<f32>,
    output: Vec<f64>,
    grad_input: Vec<f64>,
    grad_weight: Vec<f64>,
    grad_bias: Option<Vec<f64>>,
}

fn load() -> (Tol, Vec<Case>) {
    let text = std::fs::read_to_string(GOLDEN).unwrap_or_else(|e| panic!("{GOLDEN}: {e}"));
    let doc: Value = serde_json::from_str(&text).expect("golden JSON");
    let t = &doc["suggested_tolerance_f32"];
    let tol = Tol { atol: t["atol"].as_f64().expect("atol"), rtol: t["rtol"].as_f64().expect("rtol") };
    let cases = doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let g = |k: &str| Golden::parse(&c[k]);
            let (x, w, y) = (g("input").expect("input"), g("weight").expect("weight"), g("output").expect("output"));
            Case {
                name: c["name"].as_str().expect("name").to_string(),
                op: Op::parse(c, &x, &w, &y),
                x: x.channels_last().iter().map(|&v| v as f32).collect(),
                w: w.f32(),
                b: g("bias").map(|b| b.f32()),
                r: g("R").expect("R").channels_last().iter().map(|&v| v as f32).collect(),
                output: y.channels_last(),
                grad_input: g("grad_input").expect("grad_input").channels_last(),
                grad_weight: g("grad_weight").expect("grad_weight").data,
                grad_bias: g("grad_bias").map(|b| b.data),
            }
        })
        .collect();
    (tol, cases)
}

/// Backward `times` times into zeroed buffers; returns (grad_x, grad_weight, grad_bias).
fn backward_n(c: &Case, times: usize) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let (mut gx, mut gw) = (vec![0.0; c.x.len()], vec![0.0; c.w.len()]);
    let mut gb = c.grad_bias.as_ref().map(|b| vec![0.0; b.len()]);
    for _ in 0..times {
        c.op.backward(&c.x, &c.w, &c.r, &mut gx, &mut gw, gb.as_deref_mut()).unwrap_or_else(|e| panic!("{}: backward: {e}", c.name));
    }
    (gx, gw, gb)
}

/// Checks the gradients (scaled by `scale`) and returns the worst error and pass flag.
fn check_grads(c: &Case, grads: &(Vec<f32>, Vec<f32>, Option<Vec<f32>>), scale: f64, tol: &Tol) -> (f64, bool) {
    let (gx, gw, gb) = grads;
    let mut res = vec![compare(gx, &c.grad_input, scale, tol), compare(gw, &c.grad_weight, scale, tol)];
    match (gb, &c.grad_bias) {
        (Some(got), Some(want)) => res.push(compare(got, want, scale, tol)),
        (None, None) => {}
        _ => return (f64::INFINITY, false),
    }
    res.iter().fold((0.0, true), |(w, ok), &(e, o)| (w.max(e), ok && o))
}

#[test]
fn golden_forward_and_backward_match_pytorch() {
    let (tol, cases) = load();
    let mut report = Vec::new();
    let mut failed = 0;
    for c in &cases {
        let mut out = vec![f32::NAN; c.output.len()];
        c.op.forward(&c.x, &c.w, c.b.as_deref(), &mut out).unwrap_or_else(|e| panic!("{}: forward: {e}", c.name));
        let (fwd_err, fwd_ok) = compare(&out, &c.output, 1.0, &tol);
        let (bwd_err, bwd_ok) = check_grads(c, &backward_n(c, 1), 1.0, &tol);
        failed += usize::from(!(fwd_ok && bwd_ok));
        let verdict = if fwd_ok && bwd_ok { "ok" } else { "FAIL" };
        report.push(format!("{verdict:4} {:28} forward {fwd_err:.2e}  backward {bwd_err:.2e}", c.name));
    }
    let report = report.join("\n");
    println!("{report}");
    assert_eq!(cases.len(), CASES, "expected {CASES} golden cases\n{report}");
    assert_eq!(failed, 0, "{failed} case(s) outside atol {} + rtol {}:\n{report}", tol.atol, tol.rtol);
}

#[test]
fn backward_accumulates_into_gradients() {
    let (tol, cases) = load();
    let twice_tol = Tol { atol: 2.0 * tol.atol, rtol: tol.rtol };
    for c in &cases {
        let (err, ok) = check_grads(c, &backward_n(c, 2), 2.0, &twice_tol);
        assert!(ok, "{}: backward twice is not 2x the gradient (worst error {err:.2e})", c.name);
    }
    assert_eq!(cases.len(), CASES);
}

#[test]
fn golden_conv1d_gradients_hold_when_grad_x_is_known_to_be_zero() {
    let (tol, cases) = load();
    for c in &cases {
        let Op::Conv1d(ref s, n, l) = c.op else { continue };
        let (mut gx, mut gw) = (vec![0.0; c.x.len()], vec![0.0; c.w.len()]);
        let mut gb = c.grad_bias.as_ref().map(|b| vec![0.0; b.len()]);
        conv1d_backward_hinted(s, &c.x, n, l, &c.w, &c.r, Some(&mut gx), true, Some(&mut gw), gb.as_deref_mut()).unwrap();
        let (err, ok) = check_grads(c, &(gx, gw, gb), 1.0, &tol);
        assert!(ok, "{}: hinted backward off by {err:.2e}", c.name);
    }
}

#[test]
fn a_stride_one_conv_told_grad_x_is_zero_writes_it_without_reading_it() {
    // Causal, stride 1, groups 1: the windowed layout, whose input-gradient GEMM then starts
    // from zero. A NaN-filled buffer must come back equal to the gradient added into zeros.
    let spec = Conv1dSpec { in_channels: 3, out_channels: 4, kernel_size: 3, stride: 1, padding: Padding::causal(3, 1), dilation: 1, groups: 1 };
    let (b, l) = (3, 6);
    let x: Vec<f32> = (0..b * l * 3).map(|i| (i as f32 * 0.37).sin()).collect();
    let w: Vec<f32> = (0..4 * 3 * 3).map(|i| (i as f32 * 0.23).cos()).collect();
    let go: Vec<f32> = (0..b * l * 4).map(|i| (i as f32 * 0.11).sin()).collect();
    let mut want = vec![0.0f32; x.len()];
    conv1d_backward(&spec, &x, b, l, &w, &go, Some(&mut want), None, None).unwrap();
    let mut got = vec![f32::NAN; x.len()];
    conv1d_backward_hinted(&spec, &x, b, l, &w, &go, Some(&mut got), true, None, None).unwrap();
    assert_eq!(got, want);
}

fn spec1d(c_in: usize, c_out: usize, k: usize, groups: usize) -> Conv1dSpec {
    Conv1dSpec { in_channels: c_in, out_channels: c_out, kernel_size: k, stride: 1, padding: Padding::Symmetric(0), dilation: 1, groups }
}

fn err_text(r: Result<()>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn output_length_formulas() {
    assert_eq!(conv_output_len(10, 3, 4, 1, 1, 2).unwrap(), 2);
    assert_eq!(conv_output_len(8, 3, 1, 2, 0, 1).unwrap(), 8);
    assert_eq!(Padding::causal(2, 4), Padding::Asymmetric { left: 4, right: 0 });
    assert_eq!(conv_transpose_output_len(5, 3, 2, 1, 1, 1).unwrap(), 10);
    assert_eq!(conv_transpose_output_len(5, 3, 3, 2, 2, 2).unwrap(), 15);
    let e = conv_transpose_output_len(1, 1, 1, 1, 0, 1).unwrap_err().to_string();
    assert!(e.contains("= -1 is not positive"), "{e}");
}

#[test]
fn kernel_longer_than_padded_input_is_an_error() {
    let e = conv_output_len(4, 3, 1, 0, 0, 2).unwrap_err().to_string();
    assert!(e.contains("effective size d*(k-1)+1 = 5") && e.contains("padded input (4)"), "{e}");
    let spec = spec1d(2, 2, 3, 1);
    let e = err_text(conv1d_forward(&spec, &[0.0; 4], 1, 2, &[0.0; 12], None, &mut [0.0; 2]));
    assert!(e.contains("longer than the padded input (2)"), "{e}");
}

#[test]
fn groups_must_divide_channels() {
    let e = spec1d(4, 6, 3, 4).validate().unwrap_err().to_string();
    assert!(e.contains("groups (4) must divide in_channels (4) and out_channels (6)"), "{e}");
    let t = ConvTranspose1dSpec { in_channels: 3, out_channels: 4, kernel_size: 3, stride: 2, padding: 0, output_padding: 0, dilation: 1, groups: 2 };
    assert!(t.validate().unwrap_err().to_string().contains("groups (2) must divide"));
    let e = ConvTranspose1dSpec { groups: 1, output_padding: 2, ..t }.validate().unwrap_err().to_string();
    assert!(e.contains("output_padding (2) must be smaller than stride (2) or dilation (1)"), "{e}");
    assert!(spec1d(0, 2, 3, 1).validate().unwrap_err().to_string().contains("in_channels must be positive"));
}

#[test]
fn mismatched_channels_and_slice_lengths_are_errors() {
    let spec = spec1d(3, 4, 3, 1); // weight (4, 3, 3), x (1, 5, 3), out (1, 3, 4)
                                   // A weight shaped for 2 input channels.
    let e = err_text(conv1d_forward(&spec, &[0.0; 15], 1, 5, &[0.0; 24], None, &mut [0.0; 12]));
    assert!(e.starts_with("conv1d: weight holds 24 values") && e.contains("in_channels/groups 3"), "{e}");
    // An input with 2 channels per step.
    let e = err_text(conv1d_forward(&spec, &[0.0; 10], 1, 5, &[0.0; 36], None, &mut [0.0; 12]));
    assert!(e.contains("input holds 10 values but (batch 1, length 5, in_channels 3) needs 15"), "{e}");
    let e = err_text(conv1d_forward(&spec, &[0.0; 15], 1, 5, &[0.0; 36], Some(&[0.0; 3]), &mut [0.0; 12]));
    assert!(e.contains("bias holds 3 values"), "{e}");
    let e = err_text(conv1d_forward(&spec, &[0.0; 15], 1, 5, &[0.0; 36], None, &mut [0.0; 11]));
    assert!(e.contains("output holds 11 values but (batch 1, output length 3, out_channels 4) needs 12"), "{e}");
    let mut gw = [0.0; 35];
    let e = err_text(conv1d_backward(&spec, &[0.0; 15], 1, 5, &[0.0; 36], &[0.0; 12], None, Some(&mut gw), None));
    assert!(e.contains("grad_weight holds 35 values"), "{e}");

    let t = ConvTranspose1dSpec { in_channels: 2, out_channels: 3, kernel_size: 2, stride: 2, padding: 0, output_padding: 0, dilation: 1, groups: 1 }; // x (1, 3, 2) -> out (1, 6, 3)
    let e = err_text(conv_transpose1d_forward(&t, &[0.0; 6], 1, 3, &[0.0; 12], None, &mut [0.0; 17]));
    assert!(e.starts_with("conv_transpose1d: output holds 17 values"), "{e}");
    let e = err_text(conv_transpose1d_backward(&t, &[0.0; 6], 1, 3, &[0.0; 12], &[0.0; 18], Some(&mut [0.0; 5]), None, None));
    assert!(e.contains("grad_x holds 5 values"), "{e}");

    let m = MaskedConv2dSpec { in_channels: 2, out_channels: 3, kernel_h: 3, kernel_w: 3, mask: MaskType::A };
    let e = err_text(masked_conv2d_forward(&m, &[0.0; 2 * 16], 1, 4, 4, &[0.0; 27], None, &mut [0.0; 48]));
    assert!(e.contains("masked_conv2d: weight holds 27 values but (out_channels 3, in_channels 2"), "{e}");
    let even = MaskedConv2dSpec { kernel_w: 2, ..m };
    assert!(even.validate().unwrap_err().to_string().contains("must be odd"));
}

#[test]
fn masks_follow_pixelcnn() {
    assert_eq!(pixelcnn_mask(3, 3, MaskType::A), [1., 1., 1., 1., 0., 0., 0., 0., 0.]);
    assert_eq!(pixelcnn_mask(3, 3, MaskType::B), [1., 1., 1., 1., 1., 0., 0., 0., 0.]);
    assert_eq!(pixelcnn_mask(1, 3, MaskType::A), [1., 0., 0.]);
}
