"""Shared fixtures: the repository's data (../shared beside it), the command line to compare
with, a small trained run, and skips that CONVLM_REQUIRE_PYTHON=1 turns into failures."""

from __future__ import annotations

import importlib
import os
import subprocess
import tempfile
import sys
from pathlib import Path
from types import ModuleType

import pytest

import convlm

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared"
NAMES = SHARED / "data" / "names.txt"

#: A small, quick names model; every test run of it is identical for the same seed.
SMALL = {"train.eval_every": 10, "train.batch_size": 16, "train.eval_batches": 4, "model.channels": 32, "schedule.warmup_steps": 5}


def need(module: str) -> ModuleType:
    """Imports an optional test dependency, or skips (fails under CONVLM_REQUIRE_PYTHON=1)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        reason = f"{module} is not installed ({e})"
        if os.environ.get("CONVLM_REQUIRE_PYTHON") == "1":
            pytest.fail(f"CONVLM_REQUIRE_PYTHON=1 but {reason}")
        print(f"skipped: {reason}")
        pytest.skip(reason)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs the command line: the binary named by CONVLM_BIN (CI sets the one `cargo test`
    built), else `python -m convlm` (the same code, compiled into the package)."""
    binary = os.environ.get("CONVLM_BIN")
    command = [binary] if binary else [sys.executable, "-m", "convlm"]
    env = dict(os.environ, CONVLM_THREADS="1")
    done = subprocess.run(command + list(args), capture_output=True, text=True, env=env, timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"{command + list(args)} exited {done.returncode}: {done.stderr}")
    return done


@pytest.fixture(scope="session")
def names() -> Path:
    if not NAMES.is_file():
        pytest.fail(f"{NAMES} is missing: ../shared must sit beside the repository")
    return NAMES


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, names: Path) -> convlm.Run:
    """A names model trained for 30 steps (read-only for the tests that share it)."""
    out = tmp_path_factory.mktemp("runs") / "names"
    return convlm.train(config="names-dilated", data=names, out=out, steps=30, seed=7, threads=1, progress=False, settings=SMALL)


def pytest_configure(config: pytest.Config) -> None:
    """Prepared corpora go to a cache of the test session's own (the command line's too)."""
    os.environ["CONVLM_CACHE"] = tempfile.mkdtemp(prefix="convlm-cache-")
