//! MPI training between two network hosts: `scripts/mpi_hosts.sh` makes them as two network
//! namespaces joined by a veth pair, each with its own address, host name and folder, and
//! runs `mpirun` on the first across both, TCP only, its daemon on the second started through
//! an rsh agent as ssh would.
//!
//! - 2 ranks on 2 hosts train the 50 steps one process trains (losses within 1e-5 relative,
//!   weights within 1e-5, as `tests/mpi.rs`), on a char stream and on a prepared BPE corpus,
//!   each host reading its own copy; a host whose copy differs stops the run before step 1
//!   with an error naming the host and the file.
//! - A cut link, the remote rank killed (`kill -9`) and the remote rank stopped (SIGSTOP)
//!   each end the job within the wait limit, with convlm's error on every rank that lived,
//!   leave no process on either host and rank 0's run folder whole: `--resume` then gives
//!   every loss and weight of an uninterrupted 2-host run.
//!
//! Needs root, iproute2, util-linux and MPI (`cargo test --features mpi --test mpi_hosts`).
//! Each test prints `skipped: <reason>` and passes without them, unless
//! `CONVLM_REQUIRE_NETNS=1` (set by `.ci/run`) makes that a failure.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_convlm");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/mpi_hosts.sh");
/// The ranks' wait limit here (CONVLM_MPI_TIMEOUT, seconds). The harness's daemons notice a
/// cut link sooner (TCP keepalive, about 5 s), as docs/distributed.md asks.
const LIMIT_S: u64 = 20;
/// How long a rank that failed alone waits for the others to agree (src/cli/ranks.rs).
const FAILED_ALONE_S: u64 = 10;

/// Why two hosts cannot be made here, if they cannot.
fn skip_reason() -> Option<String> {
    if !convlm::dist::MPI_BUILT {
        return Some("convlm was built without the `mpi` feature (run `cargo test --features mpi --test mpi_hosts`)".into());
    }
    if !Command::new("mpirun").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Some("mpirun was not found (Debian: apt-get install openmpi-bin libopenmpi-dev)".into());
    }
    // SAFETY: geteuid only reads this process's user id.
    if unsafe { libc::geteuid() } != 0 {
        return Some("making network namespaces needs root".into());
    }
    let tools = Command::new("sh").args(["-c", "command -v ip && command -v unshare && command -v mount"]).output();
    if !tools.is_ok_and(|o| o.status.success()) {
        return Some("ip (iproute2), unshare or mount (util-linux) was not found".into());
    }
    None
}

/// Two hosts, removed with everything running on them when dropped (a failed test included).
struct Hosts {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    names: [String; 2],
}

/// The hosts of a test, or (printing why) the end of a test that cannot make them, unless
/// `CONVLM_REQUIRE_NETNS=1` says it must.
macro_rules! hosts {
    () => {
        match Hosts::up() {
            Ok(hosts) => hosts,
            Err(reason) => {
                assert!(std::env::var("CONVLM_REQUIRE_NETNS").as_deref() != Ok("1"), "CONVLM_REQUIRE_NETNS=1 but {reason}");
                println!("skipped: {reason}");
                return;
            }
        }
    };
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("the command starts");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    out
}

impl Hosts {
    fn up() -> Result<Hosts, String> {
        if let Some(reason) = skip_reason() {
            return Err(reason);
        }
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = tmp.path().join("hosts");
        let out = Command::new(SCRIPT).arg("up").arg(&dir).env("MPI_HOSTS_OWNER", std::process::id().to_string()).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            let _ = Command::new(SCRIPT).arg("down").arg(&dir).output();
            return Err(format!("two hosts could not be made as network namespaces: {}", text(&out).trim()));
        }
        let mut hosts = Hosts { _tmp: tmp, dir, names: Default::default() };
        for i in 0..2 {
            let out = run_ok(hosts.on(i, &["hostname"]));
            hosts.names[i] = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        Ok(hosts)
    }

    fn script(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(SCRIPT);
        cmd.args(args);
        cmd
    }

    /// `command` on host `i` (0 or 1).
    fn on(&self, i: usize, command: &[&str]) -> Command {
        let mut cmd = self.script(&["exec", self.dir.to_str().unwrap(), &format!("h{}", i + 1)]);
        cmd.args(command);
        cmd
    }

    /// What host `i` (0 or 1) holds: the folder it sees at [`Hosts::view`].
    fn files(&self, i: usize) -> PathBuf {
        self.dir.join(format!("h{}", i + 1))
    }

    /// Where each host sees its own files.
    fn view(&self) -> PathBuf {
        self.dir.join("host")
    }

    /// `mpirun` on host 0 with one rank on each host, each with its own corpus cache:
    /// `convlm train <args>`, or with `logs`, each rank's stderr kept on its own host
    /// (`rank.<r>` in its folder: what a rank says after its link is cut reaches no launcher).
    fn mpirun(&self, args: &[String], logs: bool) -> Command {
        let view = self.view();
        let mut cmd = self.script(&["mpirun", self.dir.to_str().unwrap(), "-np", "2"]);
        cmd.arg("-x").arg(format!("CONVLM_MPI_TIMEOUT={LIMIT_S}")).arg("-x").arg(format!("CONVLM_CACHE={}", view.join("cache").display()));
        if logs {
            cmd.arg("-x").arg(format!("RANK_LOG={}", view.join("rank").display()));
            cmd.args(["/bin/sh", "-c", r#"exec "$0" "$@" 2>>"$RANK_LOG.$OMPI_COMM_WORLD_RANK""#]);
        }
        cmd.arg(BIN).arg("train").args(args);
        cmd
    }

    /// The processes on either host: (host, pid, command line).
    fn processes(&self) -> Vec<(usize, u32, String)> {
        let out = run_ok(self.script(&["pids", self.dir.to_str().unwrap()]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut words = l.splitn(3, ' ');
                let host = if words.next()?.ends_with("-1") { 0 } else { 1 };
                Some((host, words.next()?.parse().ok()?, words.next().unwrap_or("").to_string()))
            })
            .collect()
    }

    /// Asserts that nothing runs on either host any more (waiting a little for daemons
    /// that are on their way out).
    fn assert_nothing_left(&self, after: &str) {
        let started = Instant::now();
        while !self.processes().is_empty() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(self.processes(), vec![], "processes left on the hosts after {after}");
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        match self.script(&["down", self.dir.to_str().unwrap_or_default()]).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("removing the hosts failed: {}", text(&o)),
            Err(e) => eprintln!("removing the hosts failed: {e}"),
        }
    }
}

/// A quick dilated CNN (one thread per rank) on `data` into `out`.
fn args(data: &Path, out: &Path, steps: u64, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["--model", "dilated", "--batch-size", "32", "--eval-every", "25", "--threads", "1", "-q"].map(String::from).to_vec();
    a.extend(["--data".into(), data.display().to_string(), "--steps".into(), steps.to_string(), "--out".into(), out.display().to_string()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A corpus of names.txt prepared with a BPE tokenizer of 300 tokens, trained on `lines` of
/// its lines (all of them when `None`).
fn bpe_corpus(into: &Path, lines: Option<usize>) -> PathBuf {
    let mut source = common::shared("data/names.txt");
    if let Some(n) = lines {
        let text: Vec<String> = std::fs::read_to_string(&source).unwrap().lines().take(n).map(|l| format!("{l}\n")).collect();
        source = into.with_extension("txt");
        std::fs::write(&source, text.concat()).unwrap();
    }
    let mut prepare = Command::new(BIN);
    prepare.args(["prepare", "--tokenizer", "bpe", "--vocab-size", "300", "--threads", "1", "--data"]).arg(&source).arg("--out").arg(into);
    run_ok(prepare);
    into.to_path_buf()
}

/// Trains 50 steps on one process (on `one`, host 0's copy of the data) and on the two hosts
/// (each on its own copy, at `data` in the view), and asserts they agree.
fn same_as_one_process(hosts: &Hosts, one: &Path, data: &Path, extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let single_run = tmp.path().join("one");
    let mut single = Command::new(BIN);
    single.arg("train").args(args(one, &single_run, 50, extra)).env("CONVLM_CACHE", tmp.path().join("cache"));
    run_ok(single);
    let out = run_ok(hosts.mpirun(&args(data, &hosts.view().join("run"), 50, extra), false));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("trained 50 steps").count(), 1, "{}", text(&out));
    let two = hosts.files(0).join("run");
    assert!(!hosts.files(1).join("run").exists(), "rank 1 wrote a run folder on its host");
    let (a, b) = (records(&single_run, "loss"), records(&two, "loss"));
    assert_eq!((a.len(), b.len()), (50, 50));
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "step {}: loss {x} in one process, {y} on two hosts", step + 1);
    }
    assert_eq!(records(&two, "allreduce_ms").len(), 50, "two hosts log their all-reduce time");
    for ((name, x), (_, y)) in weights(&single_run).iter().zip(&weights(&two)) {
        let diff = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        assert!(diff <= 1e-5, "{name} differs by {diff}");
    }
    hosts.assert_nothing_left("training");
}

#[test]
fn two_hosts_train_a_char_stream_as_one_process_does() {
    let hosts = hosts!();
    for i in 0..2 {
        std::fs::copy(common::shared("data/names.txt"), hosts.files(i).join("names.txt")).unwrap();
    }
    same_as_one_process(&hosts, &hosts.files(0).join("names.txt"), &hosts.view().join("names.txt"), &["--dataset", "stream"]);
    // Each host prepared its own copy into its own cache.
    for i in 0..2 {
        let cached = std::fs::read_dir(hosts.files(i).join("cache/corpora")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(cached, 1, "host {} prepared no corpus of its own", i + 1);
    }
}

#[test]
fn two_hosts_train_a_prepared_bpe_corpus_as_one_process_does() {
    let hosts = hosts!();
    let corpus = bpe_corpus(&hosts.dir.join("bpe"), None);
    for i in 0..2 {
        copy_dir(&corpus, &hosts.files(i).join("bpe"));
    }
    same_as_one_process(&hosts, &hosts.files(0).join("bpe"), &hosts.view().join("bpe"), &["--dataset", "stream"]);
}

#[test]
fn a_host_whose_corpus_or_tokenizer_differs_stops_the_run_before_step_1() {
    let hosts = hosts!();
    let corpus = bpe_corpus(&hosts.dir.join("bpe"), None);
    let other = bpe_corpus(&hosts.dir.join("other"), Some(20_000));
    let (mine, theirs) = (hosts.files(0).join("bpe"), hosts.files(1).join("bpe"));
    copy_dir(&corpus, &mine);
    // Host 2 holds a corpus with one token changed, then one with another tokenizer.
    let mut tokens = std::fs::read(corpus.join("tokens.bin")).unwrap();
    tokens[1000] = if tokens[1000] == 5 { 6 } else { 5 };
    for file in ["tokens.bin", "tokenizer.json"] {
        copy_dir(&corpus, &theirs);
        match file {
            "tokens.bin" => std::fs::write(theirs.join(file), &tokens).unwrap(),
            _ => drop(std::fs::copy(other.join(file), theirs.join(file)).unwrap()),
        }
        let run = hosts.view().join("run");
        let out = hosts.mpirun(&args(&hosts.view().join("bpe"), &run, 50, &["--dataset", "stream"]), false).output().unwrap();
        let said = text(&out);
        assert!(!out.status.success(), "the run trained on differing data:\n{said}");
        let path = hosts.view().join("bpe").join(file);
        let named = match file {
            // Same size, other ids: only rank 0's copy tells them apart.
            "tokens.bin" => format!("rank 1 of 2 on host `{}` holds another `{}` than rank 0 on host `{}`", hosts.names[1], path.display(), hosts.names[0]),
            // Another tokenizer: host 2's corpus fails its own fingerprint (corpus.json's
            // tokenizer hash) as it opens, and says so naming its host and the file.
            _ => format!("error (rank 1 of 2 on {}): {}: is not the tokenizer this corpus was made with", hosts.names[1], path.display()),
        };
        assert!(said.contains(&named), "no error naming the host and {file} (`{named}`):\n{said}");
        // Before step 1: rank 0 has not even claimed the run folder.
        assert!(!hosts.files(0).join("run").exists(), "rank 0 wrote a run folder");
        hosts.assert_nothing_left(&format!("a differing {file}"));
    }
}

/// What goes wrong on the second host while the two train.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    CutLink,
    KilledRank,
    StoppedRank,
}

/// Trains on both hosts until the first checkpoint, brings on `fault`, and checks the end of
/// the job, the hosts, rank 0's run folder and the resume (see the module docs).
fn fault_then_resume(fault: Fault) {
    let hosts = hosts!();
    for i in 0..2 {
        std::fs::copy(common::shared("data/names.txt"), hosts.files(i).join("names.txt")).unwrap();
    }
    let data = hosts.view().join("names.txt");
    let (run, saved_run) = (hosts.view().join("run"), hosts.files(0).join("run"));
    let mut job = hosts.mpirun(&args(&data, &run, 100_000, &["--checkpoint-every", "20"]), true).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while !saved_run.join("state.json").is_file() {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint after 2 minutes");
        assert!(job.try_wait().unwrap().is_none(), "the job ended before its first checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    let remote: Vec<u32> = hosts.processes().into_iter().filter(|(host, _, cmd)| *host == 1 && cmd.starts_with(BIN)).map(|(_, pid, _)| pid).collect();
    assert_eq!(remote.len(), 1, "the remote rank: {:?}", hosts.processes());
    let signal = |sig| {
        // SAFETY: sending a signal to the rank this test started.
        assert_eq!(unsafe { libc::kill(remote[0] as libc::pid_t, sig) }, 0)
    };
    match fault {
        Fault::CutLink => drop(run_ok(hosts.script(&["link", hosts.dir.to_str().unwrap(), "down"]))),
        Fault::KilledRank => signal(libc::SIGKILL),
        Fault::StoppedRank => signal(libc::SIGSTOP),
    }
    let faulted = Instant::now();
    let guard = Duration::from_secs(LIMIT_S + FAILED_ALONE_S + 60);
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        assert!(faulted.elapsed() < guard, "{fault:?}: the job still runs {guard:?} later: {:?}", hosts.processes());
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("{fault:?}: the job ended {:.1} s after the fault", faulted.elapsed().as_secs_f64());
    let mut output = String::new();
    job.stdout.take().unwrap().read_to_string(&mut output).unwrap();
    job.stderr.take().unwrap().read_to_string(&mut output).unwrap();
    assert!(!status.success(), "{fault:?}: the job succeeded:\n{output}");
    // Every rank that lived says what happened, in convlm's words, on its own host.
    let log = |i: usize| std::fs::read_to_string(hosts.files(i).join(format!("rank.{i}"))).unwrap_or_default();
    assert!(log(0).contains("error: distributed training: rank 0 of 2"), "{fault:?}: rank 0 said:\n{}\nmpirun said:\n{output}", log(0));
    if fault == Fault::CutLink {
        let named = format!("error (rank 1 of 2 on {}): distributed training: rank 1 of 2", hosts.names[1]);
        assert!(log(1).contains(&named), "{fault:?}: rank 1 said:\n{}", log(1));
    }
    hosts.assert_nothing_left(&format!("{fault:?}"));
    if fault == Fault::CutLink {
        run_ok(hosts.script(&["link", hosts.dir.to_str().unwrap(), "up"]));
    }
    // Rank 0's run folder loads, and resumes on the two hosts exactly as a run that was never
    // interrupted.
    let saved = step_of(&saved_run);
    assert!(saved >= 20 && !weights(&saved_run).is_empty());
    let mut eval = hosts.on(0, &[BIN, "eval", "--run", run.to_str().unwrap()]);
    eval.env("CONVLM_CACHE", hosts.view().join("cache")).env("CONVLM_THREADS", "1");
    run_ok(eval);
    run_ok(hosts.mpirun(&args(&data, &run, saved + 40, &["--checkpoint-every", "20", "--resume"]), false));
    assert_eq!(step_of(&saved_run), saved + 40);
    run_ok(hosts.mpirun(&args(&data, &hosts.view().join("straight"), saved + 40, &["--checkpoint-every", "20"]), false));
    let straight = hosts.files(0).join("straight");
    assert_eq!(records(&saved_run, "loss"), records(&straight, "loss"), "{fault:?}: the resumed run differs from an uninterrupted one");
    assert_eq!(weights(&saved_run), weights(&straight));
    hosts.assert_nothing_left("the resume");
}

#[test]
fn a_cut_link_ends_the_job_on_both_hosts_and_the_run_resumes() {
    fault_then_resume(Fault::CutLink);
}

#[test]
fn a_killed_remote_rank_ends_the_job_and_the_run_resumes() {
    fault_then_resume(Fault::KilledRank);
}

#[test]
fn a_stopped_remote_rank_ends_the_job_at_the_wait_limit_and_the_run_resumes() {
    fault_then_resume(Fault::StoppedRank);
}
