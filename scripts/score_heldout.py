#!/usr/bin/env python3
"""Scores a PyTorch model on held-out token ids over the blocks `convlm eval --data ...
--block-size T` scores, for scripts/bpe_quality.sh.

    score_heldout.py --ids tokens.bin --block 256 --convlm-run RUN --vocab V
    score_heldout.py --ids tokens.bin --block 256 --nanogpt CKPT   (run inside nanoGPT's folder)

The ids (little-endian uint16, a prepared corpus's tokens.bin) are cut as convlm cuts a stream
it evaluates: up to 100 contiguous chunks of ceil(n / 100) (at least T + 1) ids, the remainder
joining the last; in each chunk non-overlapping windows start at 0, T, 2T..., the last one
shorter, so every id after a chunk's first is predicted once, from the earlier ids of its own
window. Prints "loss tokens": the mean cross-entropy in nats and the number of ids predicted.

--convlm-run builds ../shared/reference/models.py's model of the run's family from its
config.json and loads its best.safetensors with load_state_dict(strict=True) (the contract
that convlm checkpoints are PyTorch checkpoints); --nanogpt loads nanoGPT's ckpt.pt.
"""
import argparse
import contextlib
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F


def windows(n, block):
    chunk = max(-(-n // 100), block + 1)
    n_chunks = max(n // chunk, 1)
    for c in range(n_chunks):
        start, end = c * chunk, (n if c + 1 == n_chunks else (c + 1) * chunk)
        for s in range(start, end - 1, block):
            yield s, min(s + block, end - 1)


def convlm_model(run, vocab):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference"))
    from models import FAMILIES
    from safetensors.torch import load_file

    with open(os.path.join(run, "config.json")) as f:
        settings = dict(json.load(f)["model"])
    family = settings.pop("family")
    settings.pop("dropout", None)  # no parameters; off in evaluation
    settings.pop("tie_embeddings", None)  # the state_dict lists the tied table under both names
    model = FAMILIES[family](vocab, **settings)
    model.load_state_dict(load_file(os.path.join(run, "best.safetensors")), strict=True)
    model.eval()
    return lambda x: model(x)


def nanogpt_model(ckpt_path):
    sys.path.insert(0, os.getcwd())
    from model import GPT, GPTConfig

    ckpt = torch.load(ckpt_path, map_location="cpu")
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
    model.eval()
    # nanoGPT returns every position's logits only when given targets.
    return lambda x: model(x, torch.zeros_like(x))[0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ids", required=True)
    p.add_argument("--block", type=int, required=True)
    p.add_argument("--convlm-run")
    p.add_argument("--vocab", type=int)
    p.add_argument("--nanogpt")
    a = p.parse_args()
    if bool(a.convlm_run) == bool(a.nanogpt) or (a.convlm_run and not a.vocab):
        p.error("give --convlm-run RUN --vocab V, or --nanogpt CKPT")
    with contextlib.redirect_stdout(sys.stderr):  # nanoGPT prints its parameter count
        logits_of = convlm_model(a.convlm_run, a.vocab) if a.convlm_run else nanogpt_model(a.nanogpt)
    ids = torch.from_numpy(np.fromfile(a.ids, dtype="<u2").astype(np.int64))
    total, count = 0.0, 0
    with torch.no_grad():
        for s, e in windows(len(ids), a.block):
            logits = logits_of(ids[s:e][None])  # (1, T, V)
            total += F.cross_entropy(logits[0].double(), ids[s + 1:e + 1], reduction="sum").item()
            count += e - s
    print(f"{total / count:.4f} {count}")


if __name__ == "__main__":
    main()
