"""The type stubs (convlm/__init__.pyi) match the compiled module: mypy's stubtest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import need


def test_stubtest_finds_the_stubs_true_to_the_module() -> None:
    need("mypy")
    allowlist = Path(__file__).with_name("stubtest-allowlist.txt")
    done = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "convlm", "--allowlist", str(allowlist)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_package_is_typed() -> None:
    import convlm

    root = Path(convlm.__file__).parent
    assert (root / "py.typed").is_file() and (root / "__init__.pyi").is_file()
    for name in convlm.__all__:
        if name != "__version__":
            assert getattr(convlm, name).__doc__, f"convlm.{name} has no docstring"
