"""Write the reference loss and gradients of the pretraining loss for two of the model fixtures
(deterministic), computed by PyTorch autograd on the independent reference implementation.

    /usr/bin/python3 tests/reference/make_gradient_fixtures.py [--out DIR]

For each fixture below, tests/fixtures/gradients/<fixture>/ receives
  gradients.safetensors  F32, one tensor per weight of the model (Hugging Face names; a tied LM head
                         has no tensor of its own: its gradient is part of the embedding's)
  loss.json              the loss, its two terms and the settings they were computed with
The batch is the fixture's tokens.npy [2, 12]: inputs tokens[:, :-1], targets tokens[:, 1:].
The loss (float64, from the weights as stored) is
  mean next-token cross-entropy + coefficient / L * sum_l E * sum_i f_{l,i} P_{l,i}
with f_{l,i} the fraction of the (token, slot) pairs routed to expert i in layer l (a constant:
detached) and P_{l,i} the mean router probability of expert i over the batch's tokens
(Switch Transformer load balancing, averaged over layers). The gradient flows through the
softmax and the chosen experts' top-k weights (Mixtral renormalises them, OLMoE does not).

Self-check (non-zero exit on failure): autograd agrees with a float64 central difference along
two random directions in weight space to 1e-7 relative (printed, ~1e-9; not stored, since its last
digits vary from run to run). The written files are byte-identical on every run.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference_model as rm  # noqa: E402
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
COEFFICIENT = 0.1
# mixtral_f32: renormalised top-k, untied, explicit head_dim; olmoe_bf16_tied: QK-norm, top-k
# weights not renormalised, LM head tied to the embedding. Together they cover every backward path.
FIXTURES = ["mixtral_f32", "olmoe_bf16_tied"]


def pretraining_loss(model, tokens, coefficient):
    """(loss, cross_entropy, load_balancing) as float64 scalars with autograd graphs."""
    cfg, w = model.cfg, model.w
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    eps = cfg.rms_norm_eps
    x = w["model.embed_tokens.weight"][inputs]
    B, T, D = x.shape
    balance_terms = []
    for i in range(cfg.num_layers):
        p = "model.layers.%d." % i
        x = x + rm.attention(model, i, rm.rms_norm(x, w[p + "input_layernorm.weight"], eps))
        h = rm.rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        probs, _, top_i = rm.route(model, i, h.reshape(B * T, D))
        y, _ = rm.moe(model, i, h)
        x = x + y
        counts = torch.zeros(cfg.num_experts, dtype=probs.dtype)
        counts.index_add_(0, top_i.reshape(-1), torch.ones(top_i.numel(), dtype=probs.dtype))
        fractions = (counts / top_i.numel()).detach()
        balance_terms.append(cfg.num_experts * (fractions * probs.mean(dim=0)).sum())
    x = rm.rms_norm(x, w["model.norm.weight"], eps)
    logits = x @ model.lm_head.T
    cross_entropy = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), targets.reshape(-1))
    load_balancing = coefficient * torch.stack(balance_terms).mean()
    return cross_entropy + load_balancing, cross_entropy, load_balancing


def gradients(model, tokens, coefficient):
    for t in model.w.values():
        t.requires_grad_(True)
        t.grad = None
    loss, ce, lb = pretraining_loss(model, tokens, coefficient)
    loss.backward()
    grads = {n: t.grad.detach().clone() for n, t in model.w.items()}
    for t in model.w.values():
        t.requires_grad_(False)
    return float(loss), float(ce), float(lb), grads


def check_directional(model, tokens, coefficient, grads, seed):
    """Autograd against a float64 central difference along random unit directions."""
    g = torch.Generator().manual_seed(seed)
    base = {n: t.clone() for n, t in model.w.items()}
    worst = 0.0
    for _ in range(2):
        direction = {n: torch.randn(t.shape, generator=g, dtype=torch.float64) for n, t in base.items()}
        norm = torch.sqrt(sum((d * d).sum() for d in direction.values()))
        direction = {n: d / norm for n, d in direction.items()}
        analytic = float(sum((grads[n] * direction[n]).sum() for n in base))
        h = 1e-5
        values = []
        for sign in (1.0, -1.0):
            model.w = {n: base[n] + sign * h * direction[n] for n in base}
            with torch.no_grad():
                values.append(float(pretraining_loss(model, tokens, coefficient)[0]))
        model.w = base
        numeric = (values[0] - values[1]) / (2 * h)
        worst = max(worst, abs(numeric - analytic) / max(abs(analytic), 1e-12))
    return worst


def build(name, out_dir):
    source = os.path.join(REPO, "tests", "fixtures", name)
    model = rm.load_model(source, dtype=torch.float64)
    tokens = torch.from_numpy(np.load(os.path.join(source, "tokens.npy")).astype(np.int64))
    loss, ce, lb, grads = gradients(model, tokens, COEFFICIENT)
    error = check_directional(model, tokens, COEFFICIENT, grads, seed=7)
    if not error < 1e-7:
        raise SystemExit("%s: autograd and finite differences disagree (%.3g relative)" % (name, error))
    names = [n for n, _ in rm.weight_names(model.cfg)]
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    st.save_file({n: grads[n].to(torch.float32).contiguous() for n in names}, os.path.join(d, "gradients.safetensors"))
    summary = {
        "source": "tests/fixtures/%s" % name,
        "inputs": "tokens.npy[:, :-1]",
        "targets": "tokens.npy[:, 1:]",
        "load_balancing_coefficient": COEFFICIENT,
        "loss": loss,
        "cross_entropy": ce,
        "load_balancing": lb,
    }
    with open(os.path.join(d, "loss.json"), "w") as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print("%s: loss %.10f (ce %.10f, lb %.10f), autograd vs finite difference %.2g"
          % (name, loss, ce, lb, error))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "gradients"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    for name in FIXTURES:
        build(name, a.out)


if __name__ == "__main__":
    main()
