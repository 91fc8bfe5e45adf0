//! Gradient norm, clipping (torch.nn.utils.clip_grad_norm_) and non-finite detection.

use convlm::nn::ParamStore;
use convlm::optim::{clip_grad_norm, first_non_finite, grad_norm};
use convlm::Tensor;

/// Grads [3, 4] and [12]: total norm 13.
fn store() -> ParamStore {
    let mut s = ParamStore::new();
    s.add("a", Tensor::zeros([2]));
    s.add("b", Tensor::zeros([1, 1]));
    s.params_mut()[0].grad.data_mut().copy_from_slice(&[3.0, 4.0]);
    s.params_mut()[1].grad.data_mut().copy_from_slice(&[12.0]);
    s
}

#[test]
fn norm_is_total_l2() {
    assert_eq!(grad_norm(&store()), 13.0);
    let mut big = ParamStore::new();
    big.add("w", Tensor::zeros([200_000]));
    big.params_mut()[0].grad.data_mut().fill(0.5);
    let want = (200_000.0f64 * 0.25).sqrt();
    assert!((grad_norm(&big) - want).abs() < 1e-9 * want);
}

#[test]
fn clipping_scales_to_max_norm() {
    let mut s = store();
    let norm = clip_grad_norm(&mut s, 1.0);
    assert_eq!(norm, 13.0);
    let coef = (1.0f64 / (13.0 + 1e-6)) as f32;
    assert_eq!(s.params()[0].grad.data(), &[3.0 * coef, 4.0 * coef]);
    assert_eq!(s.params()[1].grad.data(), &[12.0 * coef]);
    assert!((grad_norm(&s) - 1.0).abs() < 1e-6);
}

#[test]
fn small_norms_are_left_alone() {
    let mut s = store();
    assert_eq!(clip_grad_norm(&mut s, 100.0), 13.0);
    assert_eq!(s.params()[0].grad.data(), &[3.0, 4.0]);
    assert_eq!(s.params()[1].grad.data(), &[12.0]);
}

#[test]
fn non_finite_gradients_are_reported() {
    let mut s = store();
    assert_eq!(first_non_finite(&s), None);
    s.params_mut()[1].grad.data_mut()[0] = f32::NAN;
    assert_eq!(first_non_finite(&s).as_deref(), Some("b"));
    assert!(grad_norm(&s).is_nan());
    assert!(clip_grad_norm(&mut s, 1.0).is_nan());
    assert_eq!(s.params()[0].grad.data(), &[3.0, 4.0], "left untouched");
    s.params_mut()[0].grad.data_mut()[1] = f32::NEG_INFINITY;
    assert_eq!(first_non_finite(&s).as_deref(), Some("a"));
}
