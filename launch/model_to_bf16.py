#!/usr/bin/env python3
"""Rewrites a temoe-pretrained model (config.json + model.safetensors, F32) with BF16 weights, so
that the corpus testbed's model (configs/corpus-testbed/model, 3.3M parameters) is small enough to
commit. temoe reads BF16 and computes in fp32; the BF16 model is the teacher every figure is
measured on. Rounding is torch's round-to-nearest-even, so the same input gives the same bytes.

    /usr/bin/python3 launch/model_to_bf16.py IN_DIR OUT_DIR
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import safetensors_io  # noqa: E402  (the repository's own minimal reader/writer)


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: model_to_bf16.py IN_DIR OUT_DIR")
    source, target = argv[1], argv[2]
    weights = os.path.join(source, safetensors_io.SINGLE_FILE)
    config_path = os.path.join(source, "config.json")
    for path in (weights, config_path):
        if not os.path.isfile(path):
            sys.exit("model_to_bf16: %s: no such file (expected a single-file model from temoe pretrain)" % path)
    tensors = safetensors_io.load_file(weights)
    with open(config_path) as stream:
        config = json.load(stream)
    converted = {name: tensor.to(torch.bfloat16) for name, tensor in sorted(tensors.items())}
    config["torch_dtype"] = "bfloat16"
    os.makedirs(target, exist_ok=True)
    safetensors_io.save_file(converted, os.path.join(target, safetensors_io.SINGLE_FILE))
    with open(os.path.join(target, "config.json"), "w") as stream:
        json.dump(config, stream, indent=2)
        stream.write("\n")
    count = sum(t.numel() for t in converted.values())
    print("model_to_bf16: wrote %s (%d tensors, %d parameters, %d bytes of weights)" % (target, len(converted), count, 2 * count))


if __name__ == "__main__":
    main(sys.argv)
