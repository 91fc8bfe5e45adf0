"""Type stubs of the convlm package (checked against the compiled module by mypy.stubtest)."""

import os
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, final

import numpy as np
import numpy.typing as npt

from convlm._errors import ConfigError as ConfigError
from convlm._errors import ConvlmError as ConvlmError
from convlm._errors import DataError as DataError
from convlm._errors import FileError as FileError
from convlm._errors import MissingFileError as MissingFileError
from convlm._errors import TrainingError as TrainingError

__version__: str
__all__ = [
    "ConfigError",
    "ConvlmError",
    "DataError",
    "FileError",
    "MissingFileError",
    "Run",
    "Tokenizer",
    "Trainer",
    "TrainingError",
    "__version__",
    "families",
    "prepare",
    "presets",
    "train",
]

_Path = str | os.PathLike[str]
_Settings = dict[str, Any]

def train(
    data: _Path | None = None,
    config: _Path | None = None,
    model: str | None = None,
    out: _Path | None = None,
    steps: int | None = None,
    time_limit: float | str | None = None,
    seed: int | None = None,
    threads: int | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    settings: _Settings | None = None,
    precision: Literal["fp32", "bf16", "auto"] | None = None,
) -> Run:
    """Trains a model as ``convlm train`` does and returns its run."""

@final
class Trainer:
    """A training run taken a number of steps at a time."""

    def __new__(
        cls,
        data: _Path | None = None,
        config: _Path | None = None,
        model: str | None = None,
        out: _Path | None = None,
        steps: int | None = None,
        time_limit: float | str | None = None,
        seed: int | None = None,
        threads: int | None = None,
        resume: bool = False,
        force: bool = False,
        progress: bool = True,
        settings: _Settings | None = None,
        precision: Literal["fp32", "bf16", "auto"] | None = None,
    ) -> Trainer: ...
    def step(self, n: int = 1) -> list[dict[str, Any]]:
        """Takes up to ``n`` steps and returns the metrics record of each."""
    def evaluate(self, split: str = "val") -> dict[str, Any]:
        """Scores the model as it is now on all of ``split`` (the moving average of its weights
        when ``optimizer.ema_decay`` is set)."""
    def save(self) -> None:
        """Saves a checkpoint of the run as it is now."""
    def close(self) -> None:
        """Ends the trainer, unlocking the run folder."""
    def __enter__(self) -> Trainer: ...
    def __exit__(self, *_args: object) -> bool: ...
    @property
    def run(self) -> Run:
        """The run being trained."""
    @property
    def steps_done(self) -> int:
        """Steps completed in all."""
    @property
    def total_steps(self) -> int:
        """The steps the run takes in all."""
    @property
    def done(self) -> bool:
        """Whether the run has taken all its steps."""

@final
class Run:
    """A run folder read back."""

    def __new__(cls, path: _Path) -> Run: ...
    @property
    def path(self) -> Path:
        """The run folder."""
    @property
    def config(self) -> dict[str, Any]:
        """The run's config.json."""
    def sample(
        self,
        n: int = 1,
        prompt: str = "",
        max_tokens: int | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        last: bool = False,
    ) -> list[str]:
        """Samples ``n`` texts as ``convlm sample`` does."""
    def evaluate(self, split: str = "val", data: _Path | None = None, block_size: int | None = None) -> dict[str, Any]:
        """Scores the best model as ``convlm eval`` does."""
    def metrics(self) -> list[dict[str, Any]]:
        """Every record of metrics.jsonl."""
    def metrics_frame(self) -> Any:
        """The metrics as a pandas DataFrame."""
    def embeddings(self, last: bool = False) -> tuple[list[str], npt.NDArray[np.float32]]:
        """The tokens and the (vocab_size, n_embd) embedding table."""
    def state_dict(self, best: bool = True) -> dict[str, npt.NDArray[np.float32]]:
        """The weights with PyTorch's state_dict names."""
    def summary(self) -> str:
        """The model's layer table."""
    def __fspath__(self) -> str: ...

@final
class Tokenizer:
    """A character or byte-level BPE tokenizer."""

    @staticmethod
    def train(data: _Path, vocab_size: int = 5000, lowercase: bool = False, nfkc: bool = False) -> Tokenizer:
        """Trains a byte-level BPE tokenizer on a file or folder."""
    @staticmethod
    def load(path: _Path) -> Tokenizer:
        """Reads a tokenizer.json."""
    def save(self, path: _Path) -> None:
        """Writes the tokenizer as tokenizer.json."""
    def encode(self, text: str) -> list[int]:
        """The token ids of ``text``."""
    def decode(self, ids: list[int]) -> str:
        """The text of token ids."""
    @property
    def vocab_size(self) -> int:
        """Tokens in all, special ones included."""

def prepare(
    data: _Path,
    out: _Path,
    tokenizer: str = "char",
    vocab_size: int | None = None,
    dataset: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Tokenizes a corpus once into a folder that training maps."""

def presets() -> list[str]:
    """The names of the built-in presets."""

def families() -> list[str]:
    """The names of the model families."""
