#!/usr/bin/env python3
"""What a Python-driven ``Trainer.step`` loop costs per step next to ``convlm train``, on the
``names-dilated`` preset (target: at most 3% more).

    python bindings/python/bench/step_overhead.py --convlm target/release/convlm [--rounds 5] [--steps 400]

Both sides are timed by the wall clock, everything a step costs included:

* ``convlm train``: the command is run for N and for 2N steps (``--steps``), and its cost per
  step is the difference of the two wall times over N. Start-up, the final evaluation and the
  checkpoint are the same in both and cancel; what remains is N steps of its loop (the batch,
  the step, the metrics record, the progress event) once warmed up.
* Python: one ``Trainer`` takes 2N steps, one ``step()`` call each; the cost per step is the
  mean wall time of the calls N+1 .. 2N-1 (the hand-off to convlm's threads, the GIL, the
  record as a dict included; the last call, which ends with the run's evaluation and
  checkpoint, is left out).

It also prints, as a diagnosis, the median ``step_ms`` of both (the step alone, as
metrics.jsonl records it) and the median of the Python calls. Each round runs the two sides
one after the other; the result is the median over the rounds of both and their ratio. Both
use the same thread count (--threads, default 2) and the same seed; evaluations are spread out
(``train.eval_every`` = 2N) so that neither side includes one mid-way. Timings on a shared
machine are indicative: alternate, and read medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import convlm

HERE = Path(__file__).resolve()
NAMES = HERE.parents[4] / "shared" / "data" / "names.txt"


def cli_run(binary: str, out: Path, steps: int, threads: int) -> tuple[float, list[float]]:
    """Wall seconds of ``convlm train`` for ``steps`` steps, and the step_ms of its records."""
    start = time.perf_counter()
    subprocess.run(
        [binary, "train", "--config", "names-dilated", "--data", str(NAMES), "--out", str(out), "--steps", str(steps),
         "--threads", str(threads), "--warmup", "0", "--set", f"train.eval_every={2 * steps}", "--set", "train.samples=0", "-q"],
        check=True,
    )
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return wall, [r["step_ms"] for r in records if "step_ms" in r]


def cli_round(binary: str, tmp: Path, n: int, threads: int) -> tuple[float, float]:
    """ms per step of ``convlm train`` (wall, by difference), and its median step_ms."""
    short, _ = cli_run(binary, tmp / "cli-n", n, threads)
    long, step_ms = cli_run(binary, tmp / "cli-2n", 2 * n, threads)
    return (long - short) * 1e3 / n, statistics.median(step_ms[n:])


def python_round(out: Path, n: int, threads: int) -> tuple[float, float, float]:
    """ms per ``Trainer.step()`` call (mean and median of calls N+1 .. 2N-1), and the median
    step_ms of their records."""
    times, step_ms = [], []
    settings = {"train.eval_every": 4 * n, "train.samples": 0, "schedule.warmup_steps": 0}
    with convlm.Trainer(config="names-dilated", data=NAMES, out=out, steps=2 * n, threads=threads, progress=False, settings=settings) as t:
        for i in range(2 * n - 1):  # the last step ends with the run's evaluation and checkpoint
            start = time.perf_counter()
            record = t.step()[0]
            elapsed = (time.perf_counter() - start) * 1e3
            if i >= n:
                times.append(elapsed)
                step_ms.append(record["step_ms"])
    return statistics.fmean(times), statistics.median(times), statistics.median(step_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--convlm", required=True, help="the convlm binary (cargo build --release)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    a = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.rounds):
            round_dir = Path(tmp) / f"round-{i}"
            round_dir.mkdir()
            cli, cli_step = cli_round(a.convlm, round_dir, a.steps, a.threads)
            py, py_median, py_step = python_round(round_dir / "py", a.steps, a.threads)
            rows.append((cli, py, cli_step, py_step, py_median))
            print(f"round {i + 1}: convlm train {cli:.3f} ms/step, Python Trainer.step {py:.3f} ms/step, ratio {py / cli:.3f}"
                  f"  (step_ms: train {cli_step:.3f}, Python {py_step:.3f}; median Python call {py_median:.3f})", flush=True)
    cli, py, cli_step, py_step, py_median = (statistics.median(col) for col in zip(*rows))
    print(json.dumps({"workload": "names-dilated", "threads": a.threads, "steps": a.steps, "rounds": a.rounds,
                      "convlm_train_ms_per_step": round(cli, 4), "python_step_ms_per_step": round(py, 4), "ratio": round(py / cli, 4),
                      "step_ms_train": round(cli_step, 4), "step_ms_python": round(py_step, 4), "python_call_median_ms": round(py_median, 4)}))


if __name__ == "__main__":
    main()
