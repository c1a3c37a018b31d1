#!/usr/bin/python3
"""PyTorch eager baseline for `temoe bench train-step`: forward, next-token cross-entropy,
backward, gradient clipping and AdamW on the reference implementation, in float32.

    /usr/bin/python3 tests/reference/bench_train_step.py --model DIR --tokens FILE.npy --threads N [--repeats R]

tokens: int32/int64 [B, T + 1]; inputs are [:, :-1], targets [:, 1:]. Prints one JSON line:
{"tokens_per_s", "seconds" (mean per step), "threads", "repeats"}."""
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = reference_model.load_model(args.model, dtype=torch.float32)
    parameters = []
    for name in model.w:
        model.w[name] = model.w[name].clone().requires_grad_(True)
        parameters.append(model.w[name])
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    stream = torch.as_tensor(np.load(args.tokens).astype(np.int64))
    inputs, targets = stream[:, :-1], stream[:, 1:]
    vocabulary = model.cfg.vocab_size

    def step():
        logits, _ = reference_model.forward(model, inputs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocabulary), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.repeats):
        step()
    seconds = (time.perf_counter() - start) / args.repeats
    print(json.dumps({"tokens_per_s": inputs.numel() / seconds, "seconds": seconds, "threads": args.threads,
                      "repeats": args.repeats}))


if __name__ == "__main__":
    main()
