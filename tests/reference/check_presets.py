"""temoe init-model presets against the PyTorch reference, under mpirun at several ep sizes.

    /usr/bin/python3 tests/reference/check_presets.py [--build build-dev] [--presets tiny small]

For every architecture (mixtral, olmoe, qwen2-moe, qwen3-moe, gpt-oss), preset and weight dtype
(F32, BF16, and MXFP4 for gpt-oss) it writes a random model with `temoe init-model`, runs
`temoe forward` under `launch/mpirun.sh -np X --parallel.ep_size=X` for X = 1, 2, 4 and compares the
logits with reference_model.forward in float64 (max |difference| / max |reference|, bound 1e-4).
It also runs the reference token by token with a KV cache (forward_incremental) to check that
decode agrees with the whole forward, and prints the weight bytes each rank read.
Not part of ctest (the small presets take minutes); the suite's fixtures cover the same code paths.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference_model as rm  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
CASES = [("mixtral", "F32"), ("olmoe", "BF16"), ("qwen2-moe", "F32"), ("qwen2-moe", "BF16"),
         ("qwen3-moe", "F32"), ("qwen3-moe", "BF16"), ("gpt-oss", "F32"), ("gpt-oss", "BF16"),
         ("gpt-oss", "MXFP4")]


def run(command):
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError("%s failed:\n%s%s" % (" ".join(command), result.stdout, result.stderr))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-dev")
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--time", type=int, default=16)
    a = ap.parse_args()
    binary = os.path.join(REPO, a.build, "temoe")
    torch.set_num_threads(1)
    worst = 0.0
    with tempfile.TemporaryDirectory() as work:
        for preset in a.presets:
            for arch, dtype in CASES:
                model = os.path.join(work, "%s-%s-%s" % (arch, preset, dtype))
                run([binary, "init-model", "--arch", arch, "--preset", preset, "--dtype", dtype, "--seed", "5",
                     "--out", model])
                m = rm.load_model(model, torch.float64)
                g = torch.Generator().manual_seed(3)
                tokens = torch.randint(0, m.cfg.vocab_size, (2, a.time), generator=g)
                np.save(os.path.join(work, "tokens.npy"), tokens.numpy())
                with torch.no_grad():
                    reference, _ = rm.forward(m, tokens)
                    incremental, _ = rm.forward_incremental(m, tokens)
                scale = float(reference.abs().max())
                decode = float((incremental - reference).abs().max()) / scale
                for ep in (1, 2, 4):
                    out = os.path.join(work, "logits.npy")
                    report = os.path.join(work, "forward.json")
                    run(["bash", "launch/mpirun.sh", "-np", str(ep), binary, "forward", "--model", model, "--tokens",
                         os.path.join(work, "tokens.npy"), "--out", out, "--json", report,
                         "--parallel.ep_size=%d" % ep])
                    ours = torch.from_numpy(np.load(out)).double()
                    error = float((ours - reference).abs().max()) / scale
                    worst = max(worst, error)
                    read = json.load(open(report))["weight_bytes_read_per_rank"]
                    print("%-9s %-5s %-5s ep %d: max relative logit error %.2e (reference decode vs whole %.1e); "
                          "bytes read per rank %s" % (arch, preset, dtype, ep, error, decode, read), flush=True)
                    if error > 1e-4:
                        raise AssertionError("%s %s %s ep %d: %.3g > 1e-4" % (arch, preset, dtype, ep, error))
    print("all presets within 1e-4 of the reference (worst %.2e)" % worst)


if __name__ == "__main__":
    main()
