"""convlm.Trainer: a loop written in Python takes the same steps as convlm.train, and a
stopped or interrupted run resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

import convlm
from conftest import SMALL


def losses(run: convlm.Run) -> list[float]:
    return [r["loss"] for r in run.metrics() if "loss" in r]


def same_losses(a: list[float], b: list[float]) -> None:
    """Equal losses, bit for bit: a resume keeps the earlier lines of metrics.jsonl as they
    were written and computes the later ones exactly as the uninterrupted run did."""
    assert len(a) == len(b)
    assert a == b


def weights(run: convlm.Run) -> dict[str, np.ndarray]:
    return run.state_dict(best=False)


def same_weights(a: convlm.Run, b: convlm.Run) -> None:
    wa, wb = weights(a), weights(b)
    assert set(wa) == set(wb)
    for key in wa:
        np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)


def args(names: Path, out: Path, steps: int = 30) -> dict:
    return dict(config="names-dilated", data=names, out=out, steps=steps, seed=11, threads=1, progress=False, settings=SMALL)


def test_a_python_step_loop_gives_the_losses_of_train(names: Path, tmp_path: Path) -> None:
    whole = convlm.train(**args(names, tmp_path / "whole"))
    records = []
    with convlm.Trainer(**args(names, tmp_path / "stepped")) as t:
        assert (t.steps_done, t.total_steps, t.done) == (0, 30, False)
        while not t.done:
            got = t.step()
            assert len(got) == 1
            records += got
        assert t.step(5) == [], "a finished run takes no more steps"
        run = t.run
    assert [r["step"] for r in records] == list(range(1, 31))
    assert [r["loss"] for r in records] == losses(whole) == losses(run)
    assert {"loss", "lr", "grad_norm", "step_ms", "tokens_per_s"} <= set(records[0])
    # The steps that ended with the periodic evaluation carry its loss.
    evals = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    assert evals == {r["step"]: r["val_loss"] for r in whole.metrics() if "val_loss" in r}
    assert sorted(evals) == [10, 20, 30]
    same_weights(whole, run)
    assert (run.path / "loss.svg").is_file()


def test_evaluate_and_save_between_steps_change_nothing(names: Path, tmp_path: Path) -> None:
    whole = convlm.train(**args(names, tmp_path / "whole"))
    t = convlm.Trainer(**args(names, tmp_path / "saved"))
    first = t.step(7)
    assert [r["step"] for r in first] == list(range(1, 8))
    report = t.evaluate("val")
    assert set(report) == {"loss", "perplexity", "bits_per_token", "tokens"} and report["tokens"] > 0
    assert t.evaluate("test")["tokens"] > 0
    t.save()
    state = json.loads((tmp_path / "saved" / "state.json").read_text())
    assert state["step"] == 7
    t.step(2)
    t.close()
    with pytest.raises(RuntimeError, match="closed"):
        t.step()
    # Resumed from the save at step 7: steps 8 and 9 are taken again, the same way.
    with convlm.Trainer(out=tmp_path / "saved", resume=True, progress=False) as t:
        assert t.steps_done == 7
        t.step(100)
        assert t.done and t.steps_done == 30
    resumed = convlm.Run(tmp_path / "saved")
    same_losses(losses(resumed), losses(whole))
    same_weights(whole, resumed)


def interrupt_soon(delay: float = 0.3) -> threading.Timer:
    """Sends SIGINT to this process from another thread, as Ctrl-C would."""
    timer = threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_an_interrupted_step_call_saves_and_resumes_exactly(names: Path, tmp_path: Path) -> None:
    total = 100_000
    t = convlm.Trainer(**args(names, tmp_path / "cut", steps=total))
    interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        t.step(total)
    stopped = t.steps_done
    assert 0 < stopped < total
    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    assert state["step"] == stopped, "the interrupt saved a checkpoint at the step it stopped"
    # The trainer steps on from there; a resumed one would as well. The steps it takes stop
    # short of the next evaluation (every 10 steps), which would save a checkpoint too.
    on = min(3, 9 - stopped % 10)
    t.step(on)
    assert t.steps_done == stopped + on
    t.close()
    with convlm.Trainer(out=tmp_path / "cut", resume=True, progress=False) as r:
        assert r.steps_done == stopped
        r.step(5)
    cut = losses(convlm.Run(tmp_path / "cut"))
    assert len(cut) == stopped + 5
    with convlm.Trainer(**args(names, tmp_path / "whole", steps=total)) as w:
        w.step(stopped + 5)
    same_losses(cut, losses(convlm.Run(tmp_path / "whole")))


def test_an_interrupted_train_call_resumes_exactly(names: Path, tmp_path: Path) -> None:
    total = 100_000
    interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        convlm.train(**args(names, tmp_path / "cut", steps=total))
    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    stopped = state["step"]
    assert 0 < stopped < total
    # The lock is released: the run resumes, and its steps are the uninterrupted run's.
    with convlm.Trainer(out=tmp_path / "cut", resume=True, progress=False) as r:
        r.step(4)
    with convlm.Trainer(**args(names, tmp_path / "whole", steps=total)) as w:
        w.step(stopped + 4)
    same_losses(losses(convlm.Run(tmp_path / "cut")), losses(convlm.Run(tmp_path / "whole")))


def test_progress_lines_and_quiet(names: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    convlm.train(**{**args(names, tmp_path / "loud", steps=20), "progress": True})
    out = capfd.readouterr().out
    assert "dilated model," in out and "run directory" in out
    assert "step     10  val loss" in out and "step     20  val loss" in out
    convlm.train(**args(names, tmp_path / "quiet", steps=20))
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_the_pool_survives_fork(trained: convlm.Run) -> None:
    """A child forked after training (the pool's workers exist only in the parent) samples and
    scores as the parent does."""
    expected = (trained.sample(n=3, seed=2), trained.evaluate()["loss"])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read)
            got = (trained.sample(n=3, seed=2), trained.evaluate()["loss"])
            os.write(write, json.dumps(got).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    import select

    ready, _, _ = select.select([read], [], [], 300)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung")
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    samples, loss = json.loads(data)
    assert (samples, loss) == (expected[0], expected[1])


def test_precision_is_the_flag_of_convlm_train(names: Path, tmp_path: Path) -> None:
    """precision= is --precision: recorded in the run's config, kept by a resume (changing it
    is refused), an unknown one or bf16 on a CPU without AVX512_BF16 a ConfigError."""
    with pytest.raises(convlm.ConfigError, match="fp16"):
        convlm.train(**args(names, tmp_path / "fp16", steps=2), precision="fp16")
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else []
    if "avx512_bf16" not in flags:
        with pytest.raises(convlm.ConfigError, match="AVX512_BF16"):
            convlm.train(**args(names, tmp_path / "bf16", steps=2), precision="bf16")
        return
    fp32 = convlm.train(**args(names, tmp_path / "fp32", steps=10))
    with convlm.Trainer(**args(names, tmp_path / "bf16", steps=10), precision="bf16") as t:
        t.step(4)
        t.save()
    with pytest.raises(convlm.FileError, match="train.precision"):
        convlm.Trainer(out=tmp_path / "bf16", resume=True, precision="fp32", progress=False)
    bf16 = convlm.train(out=tmp_path / "bf16", resume=True, precision="bf16", progress=False)
    assert bf16.config["train"]["precision"] == "bf16"
    assert "precision" not in fp32.config["train"]
    a, b = losses(fp32), losses(bf16)
    assert len(a) == len(b) == 10 and a != b, "the bf16 run took the fp32 steps"
    assert a[0] == pytest.approx(b[0], rel=0.01), "the same model and batch: the first losses agree to bf16's rounding"


def test_a_weight_average_is_what_the_trainer_evaluates_and_the_run_exports(names: Path, tmp_path: Path) -> None:
    # One evaluation, at the last step, over the whole validation split.
    once = {"train.eval_every": 30, "train.eval_batches": 0}
    plain = convlm.train(**{**args(names, tmp_path / "plain"), "settings": {**SMALL, **once}})
    averaging = {**SMALL, **once, "optimizer.ema_decay": 0.9}
    with convlm.Trainer(**{**args(names, tmp_path / "averaged"), "settings": averaging}) as t:
        t.step(100)
        now = t.evaluate("val")["loss"]
        run = t.run
    assert run.config["optimizer"]["ema_decay"] == pytest.approx(0.9)
    # The same steps as without the average; another model exported and scored.
    same_losses(losses(run), losses(plain))
    assert not np.array_equal(weights(run)["embedding.weight"], weights(plain)["embedding.weight"])
    logged = [r["val_loss"] for r in run.metrics() if "val_loss" in r]
    assert len(logged) == 1 and logged != [r["val_loss"] for r in plain.metrics() if "val_loss" in r]
    # The trainer, the run's evaluation and `convlm eval` (best.safetensors) all score the average.
    assert now == pytest.approx(logged[0], rel=1e-9)
    assert run.evaluate("val")["loss"] == pytest.approx(logged[0], rel=1e-6)
