#!/usr/bin/env python3
"""Checks that a convlm checkpoint is a PyTorch checkpoint of ../shared/reference/models.py.

    ../shared/bench/setup_pytorch.sh
    $HOME/.cache/convlm-torch-venv/bin/python scripts/check_pytorch_load.py --run RUN_DIR \
        [--text ../shared/data/tinyshakespeare.txt] [--windows 4] [--convlm PATH]

RUN_DIR is a run folder written by `convlm train` for a sequence family (e.g. `--config
shakespeare-hyena`) with a character tokenizer. The script

  1. builds `models.FAMILIES[family](vocab_size, **settings)` from the run's config.json and
     tokenizer.json (`reference/models.py` is the contract for names, shapes and maths);
  2. loads the run's model.safetensors with `load_state_dict(strict=True)`: every key present,
     no key extra, every shape equal;
  3. for a stream run, for `--windows` excerpts of block_size + 1 characters of `--text`,
     computes the mean cross-entropy of predicting characters 1..T from characters 0..T-1 in
     PyTorch (float64), and asks `convlm eval --run RUN_DIR --last --data EXCERPT
     --block-size T` for the same number (one excerpt of T + 1 tokens is exactly one window
     of its stream evaluation); for a lines run (e.g. `--config names-best`), for
     `--windows` lines of `--text` (default: the run's own data), the loss of predicting
     `line <eos>` from `<bos> line`, against `convlm eval --run RUN_DIR --last --data LINE`;
  4. prints both for every excerpt and exits with status 1 unless they agree to 2e-4 (convlm
     prints its loss with four decimals).

It is not part of `cargo test` (it needs PyTorch and a trained run).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "..", "shared", "reference"))
from models import FAMILIES  # noqa: E402

TOLERANCE = 2e-4


def default_convlm():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    return os.path.join(target, "release", "convlm")


def build_model(run):
    with open(os.path.join(run, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(run, "tokenizer.json")) as f:
        tokenizer = json.load(f)
    if tokenizer.get("type") != "char":
        sys.exit(f"{run}: only character tokenizers are supported, not {tokenizer.get('type')!r}")
    settings = dict(config["model"])
    family = settings.pop("family")
    settings.pop("dropout", None)  # no parameters; off in eval, which is what this checks
    settings.pop("tie_embeddings", None)  # the state_dict lists the tied table under both names
    if family not in FAMILIES or family == "pixelcnn":
        sys.exit(f"{run}: family {family!r} is not a sequence family of models.py")
    vocab = tokenizer["vocab"]
    model = FAMILIES[family](len(vocab), **settings)
    return model, config, vocab, family


def tokenizer_specials(run):
    with open(os.path.join(run, "tokenizer.json")) as f:
        return json.load(f)["special_tokens"]


def encode(text, vocab):
    ids = {tok: i for i, tok in enumerate(vocab)}
    unk = ids["<unk>"]
    return [ids.get(ch, unk) for ch in text]


def convlm_loss(convlm, run, excerpt, block):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "excerpt.txt")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(excerpt)
        blocks = [] if block is None else ["--block-size", str(block)]
        out = subprocess.run([convlm, "eval", "--run", run, "--last", "--data", path] + blocks,
                             capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"convlm eval failed:\n{out.stderr}")
    m = re.search(r"loss ([0-9.]+) nats.*\((\d+) tokens\)", out.stdout)
    if not m:
        sys.exit(f"unexpected convlm eval output: {out.stdout!r}")
    return float(m.group(1)), int(m.group(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run directory written by convlm train")
    ap.add_argument("--text", help="text to score (default: tinyshakespeare for stream runs, "
                    "the run's own data file for lines runs)")
    ap.add_argument("--windows", type=int, default=4, help="excerpts to score")
    ap.add_argument("--convlm", default=default_convlm(), help="the convlm binary")
    args = ap.parse_args()

    model, config, vocab, family = build_model(args.run)
    state = load_file(os.path.join(args.run, "model.safetensors"))
    result = model.load_state_dict(state, strict=True)
    print(f"{family}: {len(state)} tensors, {sum(t.numel() for t in state.values()):,} values; "
          f"load_state_dict(strict=True): {result}")
    model = model.double().eval()

    lines = config["data"]["kind"] == "lines"
    text_path = args.text or (config["data"]["path"] if lines else
                              os.path.join(REPO, "..", "shared", "data", "tinyshakespeare.txt"))
    with open(text_path, encoding="utf-8") as f:
        text = f.read()
    if lines:
        # The run's own examples: <bos> line <eos>, every token after <bos> predicted.
        names = [line for line in text.splitlines() if line.strip()]
        pick = max(1, len(names) // max(1, args.windows))
        excerpts = [names[k * pick] for k in range(min(args.windows, len(names)))]
        block = None
    else:
        block = config["data"]["block_size"]
        step = max(1, (len(text) - block - 1) // max(1, args.windows))
        excerpts = [text[k * step:k * step + block + 1] for k in range(args.windows)]
    specials = {name: vocab.index(tok) for name, tok in tokenizer_specials(args.run).items()}
    worst = 0.0
    for k, excerpt in enumerate(excerpts):
        ids = encode(excerpt, vocab)
        if lines:
            ids = [specials["bos"]] + ids + [specials["eos"]]
        ids = torch.tensor(ids, dtype=torch.long)
        with torch.no_grad():
            logits = model(ids[None, :-1])                       # (1, T, V)
            torch_loss = F.cross_entropy(logits[0], ids[1:]).item()
        ours, tokens = convlm_loss(args.convlm, args.run, excerpt, block)
        diff = abs(ours - torch_loss)
        worst = max(worst, diff)
        print(f"excerpt {k} ({excerpt[:24]!r}…, {tokens} predictions): "
              f"PyTorch {torch_loss:.6f}  convlm {ours:.4f}  |diff| {diff:.1e}")
    ok = worst <= TOLERANCE
    print(f"{'OK' if ok else 'MISMATCH'}: largest |diff| {worst:.1e} (tolerance {TOLERANCE:.0e})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
