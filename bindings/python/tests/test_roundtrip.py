"""train → sample → evaluate: the package gives what the command line gives on the same run,
and reads the run's files back as they are."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import convlm
from conftest import SMALL, cli, need


def cli_samples(run: Path, n: int, seed: int, *extra: str) -> list[str]:
    """`convlm sample` output as texts (line data: the text, then its in-train/new mark)."""
    out = cli("sample", "--run", str(run), "-n", str(n), "--seed", str(seed), *extra).stdout
    texts = []
    for line in out.splitlines():
        parts = line.rstrip().rsplit(maxsplit=1)
        texts.append(parts[0].rstrip() if len(parts) == 2 else "")
    return texts


def test_same_seed_same_samples_as_the_command_line(trained: convlm.Run) -> None:
    ours = trained.sample(n=6, seed=3)
    assert len(ours) == 6 and all(isinstance(s, str) for s in ours)
    assert ours == cli_samples(trained.path, 6, 3)
    assert trained.sample(n=6, seed=3) == ours, "the same seed must give the same samples"
    assert trained.sample(n=6, seed=4) != ours
    # Options read like the flags: a prompt starts every sample, temperature 0 is greedy.
    prompted = trained.sample(n=3, prompt="ma", seed=1, temperature=0.8, top_k=5, max_tokens=12)
    assert prompted == cli_samples(trained.path, 3, 1, "--prompt", "ma", "--temperature", "0.8", "--top-k", "5", "--max-tokens", "12")
    assert all(s.startswith("ma") for s in prompted)
    assert trained.sample(n=2, temperature=0, seed=1)[0] == trained.sample(n=2, temperature=0, seed=9)[0]
    assert trained.sample(n=2, seed=5, last=True) == cli_samples(trained.path, 2, 5, "--last")


@pytest.mark.parametrize("split", ["val", "test", "train"])
def test_evaluate_equals_the_command_line(trained: convlm.Run, split: str) -> None:
    ours = trained.evaluate(split=split)
    assert set(ours) == {"loss", "perplexity", "bits_per_token", "tokens"}
    out = cli("eval", "--run", str(trained.path), "--split", split).stdout
    m = re.match(r"split (\w+): loss ([\d.]+) nats, perplexity ([\d.]+), ([\d.]+) bits per token \((\d+) tokens\)", out)
    assert m, out
    assert m.group(1) == split
    assert f"{ours['loss']:.4f}" == m.group(2)
    assert f"{ours['perplexity']:.3f}" == m.group(3)
    assert f"{ours['bits_per_token']:.4f}" == m.group(4)
    assert ours["tokens"] == int(m.group(5))
    assert ours["perplexity"] == pytest.approx(np.exp(ours["loss"]))


def test_evaluate_another_file(trained: convlm.Run, tmp_path: Path) -> None:
    other = tmp_path / "few.txt"
    other.write_text("emma\nolivia\nava\n")
    ours = trained.evaluate(data=other)
    out = cli("eval", "--run", str(trained.path), "--data", str(other)).stdout
    assert f"loss {ours['loss']:.4f} nats" in out
    # Every character and the end of each name: 4 + 6 + 3 + 3 tokens.
    assert ours["tokens"] == 16


def test_state_dict_holds_the_arrays_of_the_weight_files(trained: convlm.Run) -> None:
    st = need("safetensors.numpy")
    for best, name in [(True, "best.safetensors"), (False, "model.safetensors")]:
        ours = trained.state_dict(best=best)
        theirs = st.load_file(str(trained.path / name))
        assert list(ours) == list(theirs) or sorted(ours) == sorted(theirs)
        assert set(ours) == set(theirs)
        for key, array in theirs.items():
            assert ours[key].dtype == np.float32 and ours[key].shape == array.shape, key
            np.testing.assert_array_equal(ours[key], array, err_msg=key)
    # PyTorch's names: the embedding table and the causal convolutions.
    assert "embedding.weight" in ours and any(k.startswith("convs.0.") for k in ours)


def test_embeddings_are_the_embedding_table(trained: convlm.Run) -> None:
    tokens, table = trained.embeddings()
    weights = trained.state_dict()
    assert table.shape == weights["embedding.weight"].shape == (len(tokens), trained.config["model"]["n_embd"])
    np.testing.assert_array_equal(table, weights["embedding.weight"])
    assert "a" in tokens and "<bos>" in tokens


def test_metrics_config_summary_and_path(trained: convlm.Run) -> None:
    records = trained.metrics()
    losses = [r for r in records if "loss" in r]
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in losses] == list(range(1, 31))
    assert [r["step"] for r in evals] == [10, 20, 30]
    assert {"lr", "grad_norm", "step_ms", "tokens_per_s"} <= set(losses[0])
    lines = (trained.path / "metrics.jsonl").read_text().splitlines()
    assert records == [json.loads(line) for line in lines]
    config = trained.config
    assert config["model"]["family"] == "dilated" and config["model"]["channels"] == 32 and config["seed"] == 7
    assert config == json.loads((trained.path / "config.json").read_text())
    table = trained.summary()
    assert "Total params" in table and "embedding" in table
    assert isinstance(trained.path, Path) and (trained.path / "run.json").is_file()
    assert convlm.Run(trained.path).config == config
    assert repr(convlm.Run(str(trained.path))).startswith("Run(")


def test_metrics_frame(trained: convlm.Run) -> None:
    need("pandas")
    frame = trained.metrics_frame()
    assert len(frame) == len(trained.metrics())
    assert frame["loss"].notna().sum() == 30 and frame["val_loss"].notna().sum() == 3


def test_presets_families_tokenizer_and_prepare(names: Path, tmp_path: Path) -> None:
    assert "names-dilated" in convlm.presets() and "shakespeare-best" in convlm.presets()
    assert {"mlp", "dilated", "wavenet", "hyena"} <= set(convlm.families())
    corpus = tmp_path / "corpus"
    meta = convlm.prepare(names, corpus, dataset="lines")
    assert meta["kind"] == "lines" and meta["documents"] == 32033 and meta["vocab_size"] == 30
    assert (corpus / "tokens.bin").is_file()
    tok = convlm.Tokenizer.load(corpus / "tokenizer.json")
    assert tok.vocab_size == 30
    assert tok.decode(tok.encode("emma")) == "emma"
    with pytest.raises(convlm.FileError, match="already holds a prepared corpus"):
        convlm.prepare(names, corpus, dataset="lines")
    convlm.prepare(names, corpus, dataset="lines", force=True)
    bpe = convlm.Tokenizer.train(names, vocab_size=300)
    assert bpe.vocab_size == 300
    assert bpe.decode(bpe.encode("isabella\nsophia")) == "isabella\nsophia"
    bpe.save(tmp_path / "bpe.json")
    assert convlm.Tokenizer.load(tmp_path / "bpe.json").encode("zoe") == bpe.encode("zoe")


def test_python_m_convlm_is_the_command_line(trained: convlm.Run) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "convlm", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "train" in done.stdout and "sample" in done.stdout
    done = subprocess.run([sys.executable, "-m", "convlm", "eval", "--run", str(trained.path), "--split", "val"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"loss {trained.evaluate()['loss']:.4f} nats" in done.stdout
    done = subprocess.run([sys.executable, "-m", "convlm", "train", "--config", "no-such-preset"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "is neither a file nor a preset" in done.stderr
