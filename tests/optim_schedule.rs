//! Learning-rate schedules at their key steps, validation and the JSON form.

use convlm::optim::{Schedule, ScheduleConfig};
use convlm::Error;

fn close(a: f32, b: f64) {
    assert!((a as f64 - b).abs() <= 1e-6 * b.abs().max(1e-12), "got {a}, expected {b}");
}

fn cfg(schedule: Schedule, warmup_steps: u64) -> ScheduleConfig {
    ScheduleConfig { schedule, warmup_steps }
}

#[test]
fn constant_with_warmup() {
    let c = cfg(Schedule::Constant, 10);
    assert_eq!(c.lr_at(0.1, 0, 100), 0.0);
    close(c.lr_at(0.1, 5, 100), 0.05);
    assert_eq!(c.lr_at(0.1, 10, 100), 0.1);
    assert_eq!(c.lr_at(0.1, 99, 100), 0.1);
    assert_eq!(cfg(Schedule::Constant, 0).lr_at(0.1, 0, 100), 0.1);
}

#[test]
fn step_decay() {
    let c = cfg(Schedule::Step { step_size: 10, gamma: 0.5 }, 0);
    close(c.lr_at(0.2, 0, 100), 0.2);
    close(c.lr_at(0.2, 9, 100), 0.2);
    close(c.lr_at(0.2, 10, 100), 0.1);
    close(c.lr_at(0.2, 25, 100), 0.05);
    // With warm-up, decay counts from the end of warm-up.
    let w = cfg(Schedule::Step { step_size: 10, gamma: 0.5 }, 4);
    close(w.lr_at(0.2, 2, 100), 0.1);
    close(w.lr_at(0.2, 4, 100), 0.2);
    close(w.lr_at(0.2, 13, 100), 0.2);
    close(w.lr_at(0.2, 14, 100), 0.1);
}

#[test]
fn cosine_with_warmup() {
    let c = cfg(Schedule::Cosine { min_lr: 0.001 }, 10);
    close(c.lr_at(0.1, 5, 110), 0.05);
    close(c.lr_at(0.1, 10, 110), 0.1);
    close(c.lr_at(0.1, 60, 110), (0.1 + 0.001) / 2.0);
    let quarter = 0.001 + (0.1 - 0.001) * (1.0 + (std::f64::consts::PI * 0.25).cos()) / 2.0;
    close(c.lr_at(0.1, 35, 110), quarter);
    close(c.lr_at(0.1, 110, 110), 0.001);
    close(c.lr_at(0.1, 500, 110), 0.001);
    // Non-increasing after warm-up.
    let lrs: Vec<f32> = (10..=110).map(|s| c.lr_at(0.1, s, 110)).collect();
    assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
}

#[test]
fn one_cycle_matches_torch() {
    let c = cfg(Schedule::OneCycle { pct_start: 0.3, div_factor: 25.0, final_div_factor: 1e4 }, 0);
    let (max, total) = (0.01f64, 100u64);
    // OneCycleLR: phase 1 ends at step pct*total - 1 = 29, phase 2 at total - 1 = 99.
    close(c.lr_at(0.01, 0, total), max / 25.0);
    close(c.lr_at(0.01, 29, total), max);
    close(c.lr_at(0.01, 99, total), max / 25.0 / 1e4);
    let min = max / 25.0 / 1e4;
    close(c.lr_at(0.01, 64, total), (max + min) / 2.0); // pct = (64-29)/(99-29) = 0.5
    let p = 10.0 / 29.0;
    let want = max + (max / 25.0 - max) / 2.0 * ((std::f64::consts::PI * p).cos() + 1.0);
    close(c.lr_at(0.01, 10, total), want);
    let lrs: Vec<f32> = (0..total).map(|s| c.lr_at(0.01, s, total)).collect();
    assert!(lrs[..30].windows(2).all(|w| w[1] > w[0]));
    assert!(lrs[29..].windows(2).all(|w| w[1] < w[0]));
    // Past the end: the final value, no panic; tiny runs: finite values.
    close(c.lr_at(0.01, 150, total), min);
    for total in 0..4 {
        for s in 0..5 {
            assert!(c.lr_at(0.01, s, total).is_finite());
        }
    }
}

#[test]
fn validation_names_the_setting() {
    let field = |c: ScheduleConfig| match c.validate() {
        Err(Error::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(field(cfg(Schedule::Step { step_size: 0, gamma: 0.5 }, 0)), "step-size");
    assert_eq!(field(cfg(Schedule::Step { step_size: 5, gamma: 0.0 }, 0)), "gamma");
    assert_eq!(field(cfg(Schedule::OneCycle { pct_start: 1.0, div_factor: 25.0, final_div_factor: 1e4 }, 0)), "pct-start");
    assert_eq!(field(cfg(Schedule::OneCycle { pct_start: 0.3, div_factor: 25.0, final_div_factor: 1e4 }, 5)), "warmup-steps");
    assert_eq!(field(cfg(Schedule::Cosine { min_lr: -1.0 }, 0)), "min-lr");
    assert!(cfg(Schedule::Cosine { min_lr: 0.0 }, 100).validate().is_ok());
    assert!(ScheduleConfig::default().validate().is_ok());
}

#[test]
fn json_form() {
    let c: ScheduleConfig = serde_json::from_str(r#"{"schedule": "cosine", "min_lr": 0.001, "warmup_steps": 5}"#).unwrap();
    assert_eq!(c, cfg(Schedule::Cosine { min_lr: 0.001 }, 5));
    let c: ScheduleConfig = serde_json::from_str(r#"{"schedule": "onecycle"}"#).unwrap();
    assert_eq!(c, cfg(Schedule::OneCycle { pct_start: 0.3, div_factor: 25.0, final_div_factor: 1e4 }, 0));
    let c: ScheduleConfig = serde_json::from_str(r#"{"schedule": "step", "step_size": 100}"#).unwrap();
    assert_eq!(c, cfg(Schedule::Step { step_size: 100, gamma: 0.1 }, 0));
    let c: ScheduleConfig = serde_json::from_str(r#"{"schedule": "constant"}"#).unwrap();
    assert_eq!(c, ScheduleConfig::default());
    for c in [cfg(Schedule::Step { step_size: 3, gamma: 0.5 }, 2), cfg(Schedule::Constant, 7)] {
        let back: ScheduleConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
    assert!(serde_json::from_str::<ScheduleConfig>(r#"{"schedule": "linear"}"#).is_err());
}
