"""PyTorch eager baseline for the forward pass of an HF MoE checkpoint (float32, CPU).

    /usr/bin/python3 tests/reference/bench_forward.py --model DIR --tokens FILE.npy \
        --threads N [--repeats R]

Loads the model, runs one warm-up forward, then times R forwards under
torch.inference_mode() and prints ONE line of JSON on stdout:
    {"tokens_per_s": B*T*R / seconds, "seconds": total seconds of the R timed forwards,
     "threads": N, "repeats": R, "batch": B, "seq_len": T}
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="HF model directory")
    ap.add_argument("--tokens", required=True, help=".npy of int32/int64 token ids [B, T]")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.threads < 1 or a.repeats < 1:
        ap.error("--threads and --repeats must be >= 1")

    torch.set_num_threads(a.threads)
    tokens = np.load(a.tokens)
    if tokens.dtype not in (np.int32, np.int64) or tokens.ndim != 2:
        ap.error("%s: expected int32 or int64 [B, T], got %s %s" % (a.tokens, tokens.dtype, tokens.shape))
    tokens = torch.from_numpy(tokens.astype(np.int64))
    B, T = tokens.shape

    model = reference_model.load_model(a.model, dtype=torch.float32)
    with torch.inference_mode():
        reference_model.forward(model, tokens)                  # warm-up
        start = time.perf_counter()
        for _ in range(a.repeats):
            logits, _ = reference_model.forward(model, tokens)
        seconds = time.perf_counter() - start
    assert logits.shape == (B, T, model.cfg.vocab_size)
    print(json.dumps({
        "tokens_per_s": B * T * a.repeats / seconds,
        "seconds": seconds,
        "threads": a.threads,
        "repeats": a.repeats,
        "batch": int(B),
        "seq_len": int(T),
    }))


if __name__ == "__main__":
    main()
