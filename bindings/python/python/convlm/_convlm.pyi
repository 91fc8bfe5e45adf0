"""The compiled module (private): see convlm/__init__.pyi for its public names."""

from typing import Any

def cli_main(argv: list[str]) -> int:
    """Runs the convlm command line with ``argv`` and returns its exit status."""

def __getattr__(name: str) -> Any: ...
