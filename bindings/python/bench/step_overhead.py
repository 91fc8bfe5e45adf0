#!/usr/bin/env python3
"""What a Python-driven ``Trainer.step`` loop costs per step next to ``convlm train``, on the
``names-dilated`` preset (target: at most 3% more).

    python bindings/python/bench/step_overhead.py --convlm target/release/convlm [--rounds 5] [--steps 400]

Each round runs, one after the other, ``convlm train --config names-dilated --steps N`` (each
step's ``step_ms`` from its metrics.jsonl: the step alone, the loop around it not counted) and
a Python loop of N ``Trainer.step()`` calls (each call's wall time, everything the call costs
included: the hand-off to convlm's threads, the GIL, the record as a dict). The first 10% of
each run's steps are left out (warm-up). It prints each round's medians and the median over
the rounds of both and their ratio. Both use the same thread count (--threads, default 2) and
the same seed; evaluations are spread out (``train.eval_every`` = N) so that neither side's
median includes one. Timings on a shared machine are indicative: alternate, and read medians.
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


def cli_round(binary: str, out: Path, steps: int, threads: int) -> float:
    subprocess.run(
        [binary, "train", "--config", "names-dilated", "--data", str(NAMES), "--out", str(out), "--steps", str(steps),
         "--threads", str(threads), "--warmup", "0", "--set", f"train.eval_every={steps}", "--set", "train.samples=0", "-q"],
        check=True,
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    times = [r["step_ms"] for r in records if "step_ms" in r]
    return statistics.median(times[len(times) // 10:])


def python_round(out: Path, steps: int, threads: int) -> float:
    times = []
    settings = {"train.eval_every": steps, "train.samples": 0, "schedule.warmup_steps": 0}
    with convlm.Trainer(config="names-dilated", data=NAMES, out=out, steps=steps, threads=threads, progress=False, settings=settings) as t:
        for _ in range(steps - 1):  # the last step ends with the run's evaluation and checkpoint
            start = time.perf_counter()
            t.step()
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[len(times) // 10:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--convlm", required=True, help="the convlm binary (cargo build --release)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    a = parser.parse_args()
    cli_ms, py_ms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.rounds):
            c = cli_round(a.convlm, Path(tmp) / f"cli-{i}", a.steps, a.threads)
            p = python_round(Path(tmp) / f"py-{i}", a.steps, a.threads)
            cli_ms.append(c)
            py_ms.append(p)
            print(f"round {i + 1}: convlm train {c:.3f} ms/step, Python Trainer.step {p:.3f} ms/step, ratio {p / c:.3f}", flush=True)
    c, p = statistics.median(cli_ms), statistics.median(py_ms)
    print(json.dumps({"workload": "names-dilated", "threads": a.threads, "steps": a.steps, "rounds": a.rounds,
                      "convlm_train_ms_per_step": round(c, 4), "python_step_ms_per_step": round(p, 4), "ratio": round(p / c, 4)}))


if __name__ == "__main__":
    main()
