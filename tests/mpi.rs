//! Data-parallel training under a real MPI launcher (`mpirun -np 2 --oversubscribe`):
//! two processes with the same global batch as one agree on the loss of each of 50 steps
//! (1e-5 relative) and on the final weights (1e-5); killing a rank ends the job with a
//! message within a bounded time, and `--resume` under mpirun continues the run exactly.
//! A prepared corpus (read by each rank) trains the same as in one process, and a
//! time-limited run ends on every rank at the same step.
//! Each test prints `skipped: <reason>` and passes when mpirun is missing or the binary was
//! built without the `mpi` feature (`cargo test --features mpi --test mpi`), unless
//! `CONVLM_REQUIRE_MPI=1` (set by `.ci/run`) makes that a failure.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_convlm");

/// Why the MPI tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    if !convlm::dist::MPI_BUILT {
        return Some("convlm was built without the `mpi` feature (run `cargo test --features mpi --test mpi`)".into());
    }
    match Command::new("mpirun").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("mpirun was not found (Debian: apt-get install openmpi-bin libopenmpi-dev)".into()),
    }
}

/// Skips the test (printing why) when MPI is not there, unless `CONVLM_REQUIRE_MPI=1` says
/// it must be (`.ci/run`, which installs it): then a missing MPI fails instead of passing
/// unseen.
macro_rules! require_mpi {
    () => {
        if let Some(reason) = skip_reason() {
            assert!(std::env::var("CONVLM_REQUIRE_MPI").as_deref() != Ok("1"), "CONVLM_REQUIRE_MPI=1 but {reason}");
            println!("skipped: {reason}");
            return;
        }
    };
}

/// `mpirun -np <n> convlm train <args>`: oversubscribed (CI machines have few cores),
/// unbound, allowed as root, without the shared-memory single-copy mechanism (which
/// containers often forbid).
fn mpirun(n: usize, args: &[String]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", &n.to_string(), "--oversubscribe", "--bind-to", "none", BIN, "train"]).args(args);
    cmd.env("CONVLM_MPI_TIMEOUT", "30")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    cmd
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("the command starts");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    out
}

/// A quick dilated CNN on names.txt (one thread per process) into `out`.
fn args(out: &Path, steps: u64, extra: &[&str]) -> Vec<String> {
    let names = common::shared("data/names.txt");
    let mut a: Vec<String> = ["--data", &names.to_string_lossy(), "--model", "dilated", "--batch-size", "32", "--eval-every", "25", "--threads", "1", "-q"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(["--steps".to_string(), steps.to_string(), "--out".to_string(), out.to_string_lossy().into_owned()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Asserts that the losses of two runs agree step by step within 1e-5 relative.
fn same_losses(one: &Path, two: &Path, steps: usize) {
    let (a, b) = (records(one, "loss"), records(two, "loss"));
    assert_eq!((a.len(), b.len()), (steps, steps));
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "step {}: loss {x} in one process, {y} in two", step + 1);
    }
}

fn records(dir: &Path, key: &str) -> Vec<f64> {
    convlm::run::metrics::read_records(&dir.join("metrics.jsonl")).unwrap().iter().filter_map(|r| r[key].as_f64()).collect()
}

fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    convlm::io::load_safetensors(&dir.join("model.safetensors")).unwrap().0.into_iter().map(|(n, t)| (n, t.data().to_vec())).collect()
}

fn step_of(dir: &Path) -> u64 {
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    state["step"].as_u64().unwrap()
}

#[test]
fn two_processes_train_the_model_one_process_trains() {
    require_mpi!();
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let mut single = Command::new(BIN);
    single.arg("train").args(args(&one, 50, &[]));
    run_ok(single);
    let out = run_ok(mpirun(2, &args(&two, 50, &[])));
    // Rank 0 alone reports.
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("trained 50 steps").count(), 1, "{}", text(&out));
    same_losses(&one, &two, 50);
    assert!(records(&two, "allreduce_ms").len() == 50, "two processes log their all-reduce time");
    for ((name, x), (_, y)) in weights(&one).iter().zip(&weights(&two)) {
        let diff = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        assert!(diff <= 1e-5, "{name} differs by {diff}");
    }
}

#[test]
fn a_prepared_corpus_trains_the_same_on_two_processes() {
    require_mpi!();
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    let names = common::shared("data/names.txt");
    let mut prepare = Command::new(BIN);
    prepare.args(["prepare", "--dataset", "lines", "--data"]).arg(&names).arg("--out").arg(&corpus);
    run_ok(prepare);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let mut a = args(&one, 20, &[]);
    a[1] = corpus.to_string_lossy().into_owned();
    let mut single = Command::new(BIN);
    single.arg("train").args(&a);
    run_ok(single);
    let mut b = args(&two, 20, &[]);
    b[1] = corpus.to_string_lossy().into_owned();
    run_ok(mpirun(2, &b));
    same_losses(&one, &two, 20);
}

#[test]
fn a_time_limited_run_ends_on_every_rank_at_the_same_step() {
    require_mpi!();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut a = args(&run, 1, &["--time-limit", "4"]);
    // `--steps` and `--time-limit` exclude each other: drop the steps.
    let at = a.iter().position(|x| x == "--steps").unwrap();
    a.drain(at..at + 2);
    let started = Instant::now();
    run_ok(mpirun(2, &a));
    assert!(started.elapsed() < Duration::from_secs(60), "a 4 s run took {:?}", started.elapsed());
    assert!(step_of(&run) > 0);
    assert_eq!(records(&run, "loss").len() as u64, step_of(&run));
}

/// The pids of the processes mpirun started (its children, read from /proc).
fn ranks_of(mpirun: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{mpirun}/task")).into_iter().flatten().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    pids.retain(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|exe| exe.file_name() == Path::new(BIN).file_name()));
    pids.sort();
    pids
}

#[test]
fn a_killed_rank_ends_the_job_with_a_message_and_the_run_resumes() {
    require_mpi!();
    let tmp = tempfile::tempdir().unwrap();
    let run: PathBuf = tmp.path().join("run");
    let mut cmd = mpirun(2, &args(&run, 100_000, &["--checkpoint-every", "20"]));
    let mut job = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("mpirun starts");
    // Once the first checkpoint is written, kill one rank.
    let started = Instant::now();
    while !run.join("state.json").is_file() {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint after 2 minutes");
        assert!(job.try_wait().unwrap().is_none(), "the job ended before its first checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ranks = ranks_of(job.id());
    assert_eq!(ranks.len(), 2, "mpirun's children: {ranks:?}");
    // SAFETY: sending a signal to a process of this test.
    assert_eq!(unsafe { libc::kill(ranks[1] as libc::pid_t, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "the job still runs 60 s after a rank was killed");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = String::new();
    job.stdout.take().unwrap().read_to_string(&mut output).unwrap();
    job.stderr.take().unwrap().read_to_string(&mut output).unwrap();
    assert!(!status.success(), "the job succeeded although a rank was killed:\n{output}");
    // convlm's own message (mpirun's alone would name the signal too).
    assert!(output.contains("error: distributed training: rank"), "no message naming what happened:\n{output}");
    // Resume under mpirun: from the last checkpoint to 40 steps past it, exactly as a run
    // that was never interrupted.
    let saved = step_of(&run);
    run_ok(mpirun(2, &args(&run, saved + 40, &["--checkpoint-every", "20", "--resume"])));
    assert_eq!(step_of(&run), saved + 40);
    let straight = tmp.path().join("straight");
    run_ok(mpirun(2, &args(&straight, saved + 40, &["--checkpoint-every", "20"])));
    assert_eq!(records(&run, "loss"), records(&straight, "loss"), "the resumed run differs from an uninterrupted one");
    assert_eq!(weights(&run), weights(&straight));
}

#[test]
fn a_build_without_the_feature_refuses_an_mpi_launch() {
    if convlm::dist::MPI_BUILT {
        println!("skipped: this build has the `mpi` feature");
        return;
    }
    // What mpirun sets, without mpirun.
    let out = Command::new(BIN).args(["train", "--steps", "1", "-q"]).env("OMPI_COMM_WORLD_SIZE", "2").env("OMPI_COMM_WORLD_RANK", "0").output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("--features mpi"), "{}", text(&out));
}
