"""Write the AdamW + gradient-clipping reference under tests/fixtures/optim/ (deterministic).

    /usr/bin/python3 tests/reference/make_optim_fixtures.py [--out DIR]

Three float32 parameters (a [4, 3], b [5], c [2, 3, 2]) are updated for STEPS steps by
torch.optim.AdamW after torch.nn.utils.clip_grad_norm_, with a learning rate that changes every
step. The gradients are drawn at scales that make some steps clip and others not. Files:
  config.json          AdamW hyper-parameters, max_norm, the learning rate of every step
  <name>_initial.npy   float32 [shape]          value before the first step
  <name>_gradients.npy float32 [STEPS, shape]   raw gradient of every step (before clipping)
  <name>_values.npy    float32 [STEPS, shape]   value after every step
  <name>_exp_avg.npy, <name>_exp_avg_sq.npy  float32 [shape]  AdamW moments after the last step
  norms.npy            float32 [STEPS]          clip_grad_norm_'s return value (norm before clipping)
"""

import argparse
import json
import os

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 5
SHAPES = {"a": (4, 3), "b": (5,), "c": (2, 3, 2)}
GRADIENT_SCALES = [0.1, 2.0, 0.3, 5.0, 0.05]  # global norms below and above max_norm
LEARNING_RATES = [1e-2, 2e-2, 1.5e-2, 5e-3, 1e-2]
CONFIG = dict(beta1=0.9, beta2=0.95, epsilon=1e-8, weight_decay=0.1, max_norm=1.0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "optim"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    generator = torch.Generator().manual_seed(5)
    parameters = {name: torch.nn.Parameter(torch.randn(shape, generator=generator)) for name, shape in SHAPES.items()}
    optimizer = torch.optim.AdamW(list(parameters.values()), lr=LEARNING_RATES[0],
                                  betas=(CONFIG["beta1"], CONFIG["beta2"]), eps=CONFIG["epsilon"],
                                  weight_decay=CONFIG["weight_decay"], foreach=False)
    for name, parameter in parameters.items():
        np.save(os.path.join(args.out, f"{name}_initial.npy"), parameter.detach().numpy().copy())
    gradients = {name: [] for name in SHAPES}
    values = {name: [] for name in SHAPES}
    norms = []
    for step in range(STEPS):
        for name, parameter in parameters.items():
            gradient = torch.randn(SHAPES[name], generator=generator) * GRADIENT_SCALES[step]
            gradients[name].append(gradient.numpy().copy())
            parameter.grad = gradient.clone()
        norm = torch.nn.utils.clip_grad_norm_(list(parameters.values()), CONFIG["max_norm"])
        norms.append(float(norm))
        for group in optimizer.param_groups:
            group["lr"] = LEARNING_RATES[step]
        optimizer.step()
        for name, parameter in parameters.items():
            values[name].append(parameter.detach().numpy().copy())
    for name, parameter in parameters.items():
        np.save(os.path.join(args.out, f"{name}_gradients.npy"), np.stack(gradients[name]).astype(np.float32))
        np.save(os.path.join(args.out, f"{name}_values.npy"), np.stack(values[name]).astype(np.float32))
        state = optimizer.state[parameter]
        np.save(os.path.join(args.out, f"{name}_exp_avg.npy"), state["exp_avg"].numpy().copy())
        np.save(os.path.join(args.out, f"{name}_exp_avg_sq.npy"), state["exp_avg_sq"].numpy().copy())
    np.save(os.path.join(args.out, "norms.npy"), np.array(norms, dtype=np.float32))
    clipped = [n > CONFIG["max_norm"] for n in norms]
    assert any(clipped) and not all(clipped), f"want steps with and without clipping, norms {norms}"
    with open(os.path.join(args.out, "config.json"), "w") as stream:
        json.dump(dict(CONFIG, steps=STEPS, parameters=list(SHAPES), learning_rates=LEARNING_RATES,
                       torch_version=torch.__version__), stream, indent=1)
        stream.write("\n")
    print(f"wrote {args.out}: norms {['%.4f' % n for n in norms]}")


if __name__ == "__main__":
    main()
