"""Write the LoRA adapter fixtures under tests/fixtures/lora/ (deterministic).

    /usr/bin/python3 tests/reference/make_lora_fixtures.py [--out DIR]

Each fixture adapts one of the base model fixtures (tests/fixtures/<base>/, made by
make_fixtures.py) with random adapters in Hugging Face PEFT's layout, written here by Python and
not by temoe, so that temoe's reader is checked against PEFT's names:
  adapter_config.json         peft_type LORA, r, lora_alpha, use_rslora, target_modules
  adapter_model.safetensors   base_model.model.<module>.lora_A.weight [r, in] and .lora_B.weight [out, r]
  logits.npy                  float32 [2, 12, V]: the base fixture's tokens.npy through the base
                              model plus the adapters, computed in float64
  router_topk.npy             int32 [L, 2, 12, k] chosen experts with the adapters
A and B are normal; they are redrawn until every router decision (with the adapters) keeps a
margin above MIN_MARGIN and float32 chooses the same experts as float64. Self-checks: reloading
the files reproduces the logits, and the same adapters with B = 0 give the base logits exactly.
"""

import argparse
import json
import os
import re
import shutil
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference_model as rm  # noqa: E402
import safetensors_io as st  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
MIN_MARGIN = 1e-3

# name, base fixture, targets, r, alpha, rank-stabilised, deviation of A and B, seed
FIXTURES = [
    dict(name="mixtral_all", base="mixtral_f32", targets=["attention", "experts", "router"], r=4, alpha=8.0,
         rslora=False, deviation=0.05, seed=100),
    # Qwen2-MoE: the shared expert and the dense middle layer carry expert adapters too; rsLoRA scaling
    dict(name="qwen2_moe_rslora", base="qwen2_moe_f32_sharded", targets=["attention", "experts"], r=3, alpha=6.0,
         rslora=True, deviation=0.05, seed=200),
    # gpt-oss: fused experts, so attention and router only
    dict(name="gpt_oss_attention_router", base="gpt_oss_f32", targets=["attention", "router"], r=2, alpha=4.0,
         rslora=False, deviation=0.05, seed=300),
]

PATTERNS = {
    "attention": r"model\.layers\.\d+\.self_attn\.[qkvo]_proj$",
    "router": r"model\.layers\.\d+\.(block_sparse_moe\.gate|mlp\.gate|mlp\.router)$",
    "experts": r"model\.layers\.\d+\.(block_sparse_moe\.experts\.\d+\.w[123]|mlp\.experts\.\d+\.(gate|up|down)_proj"
               r"|mlp\.shared_expert\.(gate|up|down)_proj|mlp\.(gate|up|down)_proj)$",
}


def adapted_modules(model, targets):
    modules = []
    for name, tensor in model.w.items():
        if not name.endswith(".weight") or tensor.dim() != 2:
            continue
        module = name[:-len(".weight")]
        if any(re.match(PATTERNS[t], module) for t in targets):
            modules.append(module)
    return sorted(modules)


def draw_adapters(model, spec, seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for module in adapted_modules(model, spec["targets"]):
        out_features, in_features = model.w[module + ".weight"].shape
        a = torch.randn(spec["r"], in_features, generator=g, dtype=torch.float64) * spec["deviation"]
        b = torch.randn(out_features, spec["r"], generator=g, dtype=torch.float64) * spec["deviation"]
        out[module] = (a.to(torch.float32), b.to(torch.float32))
    return out


def scale_of(spec):
    return spec["alpha"] / (spec["r"] ** 0.5 if spec["rslora"] else spec["r"])


def with_adapters(base_dir, adapters, spec, dtype):
    model = rm.load_model(base_dir, dtype)
    model.adapters = {m: (a.to(dtype), b.to(dtype)) for m, (a, b) in adapters.items()}
    model.lora_scale = scale_of(spec)
    return model


def routing_ok(base_dir, adapters, spec, tokens):
    m64 = with_adapters(base_dir, adapters, spec, torch.float64)
    gaps = [g for g in rm.router_margins(m64, tokens)]
    min_gap = min(float(g.min()) for g in gaps)
    _, top64 = rm.forward(m64, tokens)
    _, top32 = rm.forward(with_adapters(base_dir, adapters, spec, torch.float32), tokens)
    same = all(torch.equal(a, b) for a, b in zip(top64, top32))
    return min_gap > MIN_MARGIN and same, min_gap


def write_adapters(directory, adapters, spec, base):
    tensors = {}
    for module, (a, b) in adapters.items():
        tensors["base_model.model.%s.lora_A.weight" % module] = a
        tensors["base_model.model.%s.lora_B.weight" % module] = b
    st.save_file(tensors, os.path.join(directory, "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base,
        "r": spec["r"], "lora_alpha": spec["alpha"], "lora_dropout": 0.0, "use_rslora": spec["rslora"],
        "use_dora": False, "fan_in_fan_out": False, "bias": "none", "init_lora_weights": True,
        "target_modules": sorted({m.rsplit(".", 1)[1] for m in adapters}), "modules_to_save": None,
        "layers_to_transform": None, "rank_pattern": {}, "alpha_pattern": {}, "inference_mode": True,
    }
    with open(os.path.join(directory, "adapter_config.json"), "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")


def build(spec, out_dir):
    base_dir = os.path.join(REPO, "tests", "fixtures", spec["base"])
    tokens = torch.from_numpy(np.load(os.path.join(base_dir, "tokens.npy")).astype(np.int64))
    base_model = rm.load_model(base_dir, torch.float64)
    for attempt in range(100):
        adapters = draw_adapters(base_model, spec, spec["seed"] + attempt)
        ok, min_gap = routing_ok(base_dir, adapters, spec, tokens)
        if ok:
            break
    else:
        raise RuntimeError("%s: no seed with decisive routing" % spec["name"])
    d = os.path.join(out_dir, spec["name"])
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    write_adapters(d, adapters, spec, spec["base"])

    # from the files as written, through the reference's own PEFT reader
    model = rm.load_adapters(rm.load_model(base_dir, torch.float64), d)
    with torch.no_grad():
        logits, topk = rm.forward(model, tokens)
    np.save(os.path.join(d, "logits.npy"), logits.numpy().astype("<f4"))
    np.save(os.path.join(d, "router_topk.npy"), torch.stack(topk).numpy().astype("<i4"))

    # self-checks: the adapters change the logits; with B = 0 they are the base model's exactly
    base_logits, _ = rm.forward(base_model, tokens)
    change = float((logits - base_logits).abs().max() / base_logits.abs().max())
    assert change > 1e-3, "%s: the adapters barely change the logits (%g)" % (spec["name"], change)
    zero = rm.load_adapters(rm.load_model(base_dir, torch.float64), d)
    zero.adapters = {m: (a, torch.zeros_like(b)) for m, (a, b) in zero.adapters.items()}
    zero_logits, _ = rm.forward(zero, tokens)
    assert torch.equal(zero_logits, base_logits), spec["name"] + ": B = 0 does not give the base logits"
    return dict(name=spec["name"], modules=len(adapters), attempts=attempt + 1, min_gap=min_gap, change=change)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "lora"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)
    for spec in FIXTURES:
        print(build(spec, a.out))


if __name__ == "__main__":
    main()
