"""convlm: train, evaluate and sample convolutional language models on the CPU, from Python.

The same library as the ``convlm`` command, with the same names, defaults and messages::

    import convlm
    run = convlm.train(config="names-dilated", data="names.txt", out="runs/names", steps=3000)
    run.sample(n=5, seed=1)
    run.evaluate(split="test")

``convlm.Trainer`` takes a run a number of steps at a time, ``convlm.Run`` reads a run folder
back (samples, scores, metrics, embeddings, PyTorch state_dict), ``convlm.prepare`` tokenizes a
corpus once, and ``python -m convlm ...`` runs the command line itself.
"""

from convlm._convlm import Run, Tokenizer, Trainer, __version__, families, prepare, presets, train
from convlm._errors import ConfigError, ConvlmError, DataError, FileError, MissingFileError, TrainingError

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
