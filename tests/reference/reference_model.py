"""Independent PyTorch reference for decoder-only MoE transformers in Hugging Face layout.

Families (config.json "model_type"):
  * "mixtral": router softmax over all experts, top-k, weights renormalised to sum 1;
               experts model.layers.{i}.block_sparse_moe.experts.{j}.{w1,w3,w2}.weight
  * "olmoe":   RMSNorm over the whole q / k projection outputs (q_norm, k_norm) before the
               head split and rotary; top-k softmax probabilities renormalised only when
               config "norm_topk_prob" is true (false for the released OLMoE);
               experts model.layers.{i}.mlp.experts.{j}.{gate_proj,up_proj,down_proj}.weight

  * "qwen2_moe": q/k/v projection biases; routed experts of moe_intermediate_size
               (mlp.experts.{j}.*), softmax router with optional norm_topk_prob, and a shared
               expert (mlp.shared_expert.*) on every token scaled by sigmoid(mlp.shared_expert_gate);
               dense MLP layers (mlp.{gate,up,down}_proj) where mlp_only_layers / decoder_sparse_step say
  * "qwen3_moe": like qwen2_moe without the shared expert and the biases, plus RMSNorm over each
               head's head_dim of q and k (q_norm, k_norm of shape [head_dim]) before rotary
  * "gpt_oss":  biases on q/k/v/o; a learned sink logit per head in every attention softmax;
               sliding-window attention (window sliding_window) on "sliding_attention" layers;
               YaRN rotary scaling; router with bias, top-k of the logits then a softmax over the
               k chosen; fused experts mlp.experts.gate_up_proj [E, D, 2F] (gate = even columns,
               up = odd) with biases, used as x @ W, or MXFP4 *_blocks / *_scales ([E, out, in/32, 16]
               uint8 FP4 E2M1 pairs, low nibble first, and [E, out, in/32] E8M0 exponents);
               activation (clamp(up, -7, 7) + 1) * g * sigmoid(1.702 g), g = min(gate, 7)

All: pre-norm residual blocks, RMSNorm, rotary embedding in the "rotate_half"
(non-interleaved) convention, causal grouped-query attention, SwiGLU-type experts.

Held masks (route(..., allowed=...)): the k experts are the top-k logits inside the mask; their
weights follow the family's own rule (full softmax probabilities, renormalised or not; softmax of
the k chosen logits for gpt_oss).

Usage:
    model = load_model("tests/fixtures/mixtral_f32", dtype=torch.float64)
    logits, topk = forward(model, tokens)            # tokens int64 [B, T]
    logits.shape == [B, T, V]; topk[l] int64 [B, T, k] (descending router probability)

This is also the "PyTorch eager" baseline of the C++ benchmark (bench_forward.py): the
MoE is a plain loop over experts with index selection.
"""

import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


FAMILIES = ("mixtral", "olmoe", "qwen2_moe", "qwen3_moe", "gpt_oss")


class Config:
    """The config.json keys the forward pass needs, with HF defaults."""

    def __init__(self, raw):
        self.raw = raw
        self.model_type = raw["model_type"]
        if self.model_type not in FAMILIES:
            raise ValueError("unsupported model_type %r" % self.model_type)
        t = self.model_type
        qwen = t in ("qwen2_moe", "qwen3_moe")
        self.vocab_size = int(raw["vocab_size"])
        self.hidden_size = int(raw["hidden_size"])
        self.num_layers = int(raw["num_hidden_layers"])
        self.num_heads = int(raw["num_attention_heads"])
        self.num_kv_heads = int(raw.get("num_key_value_heads") or self.num_heads)
        head_dim = raw.get("head_dim", 64 if t == "gpt_oss" else None)
        self.head_dim = int(head_dim) if head_dim else self.hidden_size // self.num_heads
        self.rope_theta = float(raw.get("rope_theta", 10000.0))
        self.rms_norm_eps = float(raw.get("rms_norm_eps", 1e-5))
        self.tie_word_embeddings = bool(raw.get("tie_word_embeddings", False))
        self.max_position_embeddings = int(raw.get("max_position_embeddings", 4096))
        self.top_k = int(raw["num_experts_per_tok"])
        self.clip_qkv = raw.get("clip_qkv")
        self.qkv_bias = False
        self.o_bias = False
        self.qk_norm = None              # None, "projection" (OLMoE) or "head" (Qwen3)
        self.shared_expert_size = 0
        self.dense_layers = [False] * self.num_layers
        self.sliding = [False] * self.num_layers
        self.sliding_window = None
        self.yarn = None
        if t in ("mixtral", "gpt_oss"):
            self.num_experts = int(raw["num_local_experts"])
        else:
            self.num_experts = int(raw["num_experts"])
        if t == "mixtral":
            self.intermediate_size = int(raw["intermediate_size"])
            self.gate_rule = "renormalise"
        elif t == "olmoe":
            self.intermediate_size = int(raw["intermediate_size"])
            self.gate_rule = "renormalise" if raw.get("norm_topk_prob", False) else "softmax"
            self.qk_norm = "projection"
        elif qwen:
            self.intermediate_size = int(raw["moe_intermediate_size"])
            self.dense_size = int(raw["intermediate_size"])
            self.gate_rule = "renormalise" if raw.get("norm_topk_prob", False) else "softmax"
            step = int(raw.get("decoder_sparse_step", 1))
            only = raw.get("mlp_only_layers") or []
            self.dense_layers = [(i in only) or (i + 1) % step != 0 for i in range(self.num_layers)]
            if raw.get("use_sliding_window", False):
                raise ValueError("use_sliding_window not supported")
            if t == "qwen2_moe":
                self.qkv_bias = bool(raw.get("qkv_bias", True))
                self.shared_expert_size = int(raw["shared_expert_intermediate_size"])
            else:
                self.qkv_bias = bool(raw.get("attention_bias", False))
                self.qk_norm = "head"
        else:
            self.intermediate_size = int(raw["intermediate_size"])
            self.gate_rule = "softmax_of_top_k"
            self.qkv_bias = self.o_bias = bool(raw.get("attention_bias", True))
            self.sliding_window = int(raw.get("sliding_window", 128))
            types = raw.get("layer_types") or [
                "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(self.num_layers)]
            for kind in types:
                if kind not in ("sliding_attention", "full_attention"):
                    raise ValueError("unknown layer type %r" % kind)
            self.sliding = [kind == "sliding_attention" for kind in types]
            self.swiglu_limit = float(raw.get("swiglu_limit", 7.0))
            self.swiglu_alpha = 1.702
            scaling = raw.get("rope_scaling")
            if scaling is not None:
                if scaling.get("rope_type", scaling.get("type")) != "yarn":
                    raise ValueError("rope_scaling %r not supported" % scaling)
                self.yarn = scaling
        # things this reference does not implement: refuse rather than silently differ
        if raw.get("hidden_act", "silu") != "silu":
            raise ValueError("hidden_act %r not supported" % raw["hidden_act"])
        if t in ("mixtral", "olmoe"):
            if raw.get("attention_bias", False):
                raise ValueError("attention_bias not supported")
            if raw.get("sliding_window") is not None:
                raise ValueError("sliding_window not supported")
        if t != "gpt_oss" and raw.get("rope_scaling") is not None:
            raise ValueError("rope_scaling not supported")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even")
        if not 1 <= self.top_k <= self.num_experts:
            raise ValueError("num_experts_per_tok must be in [1, num_experts]")


def moe_prefix(cfg, layer):
    return "model.layers.%d.%s." % (layer, "block_sparse_moe" if cfg.model_type == "mixtral" else "mlp")


def weight_names(cfg, mxfp4=False):
    """Every tensor name of the checkpoint, in the HF module order, with its shape.
    gpt_oss experts are fused per layer; with mxfp4 they are *_blocks / *_scales (uint8)."""
    D, F, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    E, H, hd = cfg.num_experts, cfg.num_heads, cfg.head_dim
    Hd, KVd = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    out = [("model.embed_tokens.weight", [V, D])]
    for i in range(cfg.num_layers):
        p = "model.layers.%d." % i
        a = p + "self_attn."
        out.append((p + "input_layernorm.weight", [D]))
        out.append((a + "q_proj.weight", [Hd, D]))
        if cfg.qkv_bias:
            out.append((a + "q_proj.bias", [Hd]))
        out.append((a + "k_proj.weight", [KVd, D]))
        if cfg.qkv_bias:
            out.append((a + "k_proj.bias", [KVd]))
        out.append((a + "v_proj.weight", [KVd, D]))
        if cfg.qkv_bias:
            out.append((a + "v_proj.bias", [KVd]))
        out.append((a + "o_proj.weight", [D, Hd]))
        if cfg.o_bias:
            out.append((a + "o_proj.bias", [D]))
        if cfg.qk_norm == "projection":
            out.append((a + "q_norm.weight", [Hd]))
            out.append((a + "k_norm.weight", [KVd]))
        elif cfg.qk_norm == "head":
            out.append((a + "q_norm.weight", [hd]))
            out.append((a + "k_norm.weight", [hd]))
        if cfg.model_type == "gpt_oss":
            out.append((a + "sinks", [H]))
        out.append((p + "post_attention_layernorm.weight", [D]))
        moe = moe_prefix(cfg, i)
        if cfg.dense_layers[i]:
            Fd = cfg.dense_size
            out += [(moe + "gate_proj.weight", [Fd, D]), (moe + "up_proj.weight", [Fd, D]),
                    (moe + "down_proj.weight", [D, Fd])]
            continue
        if cfg.model_type == "gpt_oss":
            out.append((moe + "router.weight", [E, D]))
            out.append((moe + "router.bias", [E]))
            x = moe + "experts."
            if mxfp4:
                out += [(x + "gate_up_proj_blocks", [E, 2 * F, D // 32, 16]),
                        (x + "gate_up_proj_scales", [E, 2 * F, D // 32]),
                        (x + "gate_up_proj_bias", [E, 2 * F]),
                        (x + "down_proj_blocks", [E, D, F // 32, 16]),
                        (x + "down_proj_scales", [E, D, F // 32]),
                        (x + "down_proj_bias", [E, D])]
            else:
                out += [(x + "gate_up_proj", [E, D, 2 * F]), (x + "gate_up_proj_bias", [E, 2 * F]),
                        (x + "down_proj", [E, F, D]), (x + "down_proj_bias", [E, D])]
            continue
        out.append((moe + "gate.weight", [E, D]))
        for j in range(E):
            e = moe + "experts.%d." % j
            if cfg.model_type == "mixtral":
                out.append((e + "w1.weight", [F, D]))
                out.append((e + "w2.weight", [D, F]))
                out.append((e + "w3.weight", [F, D]))
            else:
                out.append((e + "gate_proj.weight", [F, D]))
                out.append((e + "up_proj.weight", [F, D]))
                out.append((e + "down_proj.weight", [D, F]))
        if cfg.shared_expert_size:
            Fs = cfg.shared_expert_size
            s = moe + "shared_expert."
            out += [(s + "gate_proj.weight", [Fs, D]), (s + "up_proj.weight", [Fs, D]),
                    (s + "down_proj.weight", [D, Fs]), (moe + "shared_expert_gate.weight", [1, D])]
    out.append(("model.norm.weight", [D]))
    if not cfg.tie_word_embeddings:
        out.append(("lm_head.weight", [V, D]))
    return out


def expert_names(cfg, layer, j):
    """(gate, up, down) tensor names of expert j of a layer."""
    if cfg.model_type == "mixtral":
        e = "model.layers.%d.block_sparse_moe.experts.%d." % (layer, j)
        return e + "w1.weight", e + "w3.weight", e + "w2.weight"
    e = "model.layers.%d.mlp.experts.%d." % (layer, j)
    return e + "gate_proj.weight", e + "up_proj.weight", e + "down_proj.weight"


def router_name(cfg, layer):
    return moe_prefix(cfg, layer) + ("router.weight" if cfg.model_type == "gpt_oss" else "gate.weight")


# FP4 E2M1 code -> value (codes 8-15 are the negatives of 0-7)
FP4_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def dequantize_mxfp4(blocks, scales):
    """blocks uint8 [..., rows, G, 16], scales uint8 [..., rows, G] -> float64 [..., rows, G * 32]."""
    lut = torch.tensor(FP4_VALUES, dtype=torch.float64)
    b = blocks.to(torch.int64)
    low, high = b & 0x0F, b >> 4
    values = torch.stack([lut[low], lut[high]], dim=-1).reshape(*b.shape[:-1], 32)   # low nibble first
    values = values * torch.pow(2.0, scales.to(torch.float64) - 127.0).unsqueeze(-1)
    return values.reshape(*b.shape[:-2], b.shape[-2] * 32)


def fused_experts(model, layer):
    """gpt_oss: (gate_up [E, D, 2F], gate_up_bias [E, 2F], down [E, F, D], down_bias [E, D]) used as x @ W."""
    x = moe_prefix(model.cfg, layer) + "experts."
    w = model.w
    if x + "gate_up_proj" in w:
        gate_up, down = w[x + "gate_up_proj"], w[x + "down_proj"]
    else:
        # MXFP4 stores [E, out, in]: transpose to the x @ W form
        gate_up = model.dequantized[x + "gate_up_proj"]
        down = model.dequantized[x + "down_proj"]
    return gate_up, w[x + "gate_up_proj_bias"], down, w[x + "down_proj_bias"]


class Model:
    def __init__(self, cfg, weights, dequantized=None, adapters=None, lora_scale=1.0):
        self.cfg = cfg
        self.w = weights
        self.dequantized = dequantized or {}
        # LoRA (PEFT's layout): module name -> (A [r, in], B [out, r]); y += scale * x A^T B^T
        self.adapters = adapters or {}
        self.lora_scale = lora_scale

    @property
    def lm_head(self):
        if self.cfg.tie_word_embeddings:
            return self.w["model.embed_tokens.weight"]
        return self.w["lm_head.weight"]


def load_config(directory):
    with open(os.path.join(directory, "config.json")) as f:
        return Config(json.load(f))


def load_model(directory, dtype=torch.float64):
    """Load config.json and the weights (single file or sharded), cast to `dtype`.
    Checks that the checkpoint has exactly the expected tensors with the expected shapes
    (a tied checkpoint may still carry an lm_head.weight, which is then ignored). MXFP4
    experts are dequantised here, once."""
    cfg = load_config(directory)
    raw = safetensors_io.load_checkpoint(directory)
    mxfp4 = any(n.endswith("_blocks") for n in raw)
    expected = weight_names(cfg, mxfp4)
    names = set()
    for name, shape in expected:
        if name not in raw:
            raise KeyError("%s: missing tensor %s" % (directory, name))
        if list(raw[name].shape) != shape:
            raise ValueError("%s: %s has shape %s, expected %s"
                             % (directory, name, list(raw[name].shape), shape))
        names.add(name)
    extra = set(raw) - names - {"lm_head.weight"}
    if extra:
        raise ValueError("%s: unexpected tensors %s" % (directory, sorted(extra)))
    weights = {n: raw[n].to(dtype) for n in names if raw[n].dtype != torch.uint8}
    dequantized = {}
    for n in names:
        if n.endswith("_blocks"):
            base = n[:-len("_blocks")]
            dequantized[base] = dequantize_mxfp4(raw[n], raw[base + "_scales"]).transpose(1, 2).to(dtype)
    return Model(cfg, weights, dequantized)


# ---------------------------------------------------------------- building blocks

def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def yarn_inverse_frequencies(cfg):
    """(inverse frequencies [hd/2] float64, cos/sin scale) of YaRN (Peng et al. 2023, 'NTK-by-parts'
    with the 0.1 ln(s) + 1 attention temperature), from the rope_scaling entry of config.json."""
    y = cfg.yarn
    dim, base = cfg.head_dim, cfg.rope_theta
    factor = float(y.get("factor", 1.0))
    original = float(y.get("original_max_position_embeddings", cfg.max_position_embeddings))
    beta_fast, beta_slow = float(y.get("beta_fast", 32.0)), float(y.get("beta_slow", 1.0))

    def dim_of(rotations):        # the pair index that turns `rotations` times over `original` positions
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = dim_of(beta_fast), dim_of(beta_slow)
    if y.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    i = torch.arange(dim // 2, dtype=torch.float64)
    plain = 1.0 / base ** (2 * i / dim)
    keep = 1.0 - ((i - low) / (high - low)).clamp(0, 1)        # 1: keep the frequency, 0: divide by factor
    inv = plain / factor * (1 - keep) + plain * keep
    scale = float(y["attention_factor"]) if y.get("attention_factor") else (
        0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0)
    return inv, scale


def rotary_cos_sin(positions, head_dim, theta, dtype, cfg=None):
    """cos, sin of shape [len(positions), head_dim], computed in float64 then cast (YaRN when
    cfg has rope_scaling)."""
    half = head_dim // 2
    scale = 1.0
    if cfg is not None and cfg.yarn is not None:
        inv_freq, scale = yarn_inverse_frequencies(cfg)
    else:
        inv_freq = 1.0 / (theta ** (torch.arange(half, dtype=torch.float64) * 2.0 / head_dim))
    angle = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    angle = torch.cat([angle, angle], dim=-1)
    return (scale * angle.cos()).to(dtype), (scale * angle.sin()).to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x, cos, sin):
    """x [..., T, hd]; cos, sin [T, hd]."""
    return x * cos + rotate_half(x) * sin


def load_adapters(model, directory):
    """Attach the PEFT LoRA adapters of `directory` (adapter_config.json, adapter_model.safetensors;
    tensors base_model.model.<module>.lora_A.weight / lora_B.weight) to `model`, in its dtype.
    Every adapted module must be a weight of the model, with A [r, in] and B [out, r]."""
    with open(os.path.join(directory, "adapter_config.json")) as f:
        config = json.load(f)
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    scale = alpha / math.sqrt(r) if config.get("use_rslora", False) else alpha / r
    raw = safetensors_io.load_file(os.path.join(directory, "adapter_model.safetensors"))
    pairs = {}
    for name, tensor in raw.items():
        prefix = "base_model.model."
        for part, suffix in (("A", ".lora_A.weight"), ("B", ".lora_B.weight")):
            if name.startswith(prefix) and name.endswith(suffix):
                pairs.setdefault(name[len(prefix):-len(suffix)], {})[part] = tensor
                break
        else:
            raise ValueError("%s: %s is not a LoRA tensor" % (directory, name))
    adapters = {}
    dtype = next(iter(model.w.values())).dtype
    for module, pair in pairs.items():
        weight = model.w.get(module + ".weight")
        if weight is None:
            raise KeyError("%s: adapter for %s, which the model does not have" % (directory, module))
        a, b = pair["A"].to(dtype), pair["B"].to(dtype)
        if list(a.shape) != [r, weight.shape[1]] or list(b.shape) != [weight.shape[0], r]:
            raise ValueError("%s: %s has A %s and B %s for a weight %s, r = %d"
                             % (directory, module, list(a.shape), list(b.shape), list(weight.shape), r))
        adapters[module] = (a, b)
    model.adapters, model.lora_scale = adapters, scale
    return model


def lora(model, x, module):
    """The LoRA update of `module` at x (0 without an adapter there)."""
    pair = model.adapters.get(module)
    if pair is None:
        return 0.0
    a, b = pair
    return model.lora_scale * ((x @ a.T) @ b.T)


def project(model, x, weight_name):
    """x W^T for a bias-free weight, plus its adapter."""
    return x @ model.w[weight_name].T + lora(model, x, weight_name[:-len(".weight")])


def linear(model, x, name):
    y = x @ model.w[name + ".weight"].T + lora(model, x, name)
    bias = model.w.get(name + ".bias")
    return y if bias is None else y + bias


def project_qkv(model, layer, h):
    """h [B, T, D] (already normed) -> q [B, H, T, hd], k, v [B, KV, T, hd], before rotary."""
    cfg, w = model.cfg, model.w
    p = "model.layers.%d.self_attn." % layer
    B, T, _ = h.shape
    q = linear(model, h, p + "q_proj")
    k = linear(model, h, p + "k_proj")
    v = linear(model, h, p + "v_proj")
    hd = cfg.head_dim
    if cfg.qk_norm == "projection":
        q = rms_norm(q, w[p + "q_norm.weight"], cfg.rms_norm_eps)
        k = rms_norm(k, w[p + "k_norm.weight"], cfg.rms_norm_eps)
    if cfg.clip_qkv is not None:
        c = float(cfg.clip_qkv)
        q, k, v = q.clamp(-c, c), k.clamp(-c, c), v.clamp(-c, c)
    q = q.view(B, T, cfg.num_heads, hd)
    k = k.view(B, T, cfg.num_kv_heads, hd)
    if cfg.qk_norm == "head":
        q = rms_norm(q, w[p + "q_norm.weight"], cfg.rms_norm_eps)
        k = rms_norm(k, w[p + "k_norm.weight"], cfg.rms_norm_eps)
    v = v.view(B, T, cfg.num_kv_heads, hd).transpose(1, 2)
    return q.transpose(1, 2), k.transpose(1, 2), v


def allowed_keys(cfg, layer, T, first=0):
    """[T, first + T] bool: query first + s may attend key j (causal, and within the window on
    gpt_oss sliding layers)."""
    qpos = torch.arange(first, first + T)[:, None]
    kpos = torch.arange(first + T)[None, :]
    ok = kpos <= qpos
    if cfg.sliding[layer]:
        ok = ok & (kpos > qpos - cfg.sliding_window)
    return ok


def attend(model, layer, q, k, v, ok):
    """q [B, H, S, hd]; k, v [B, KV, L, hd]; ok [S, L] -> [B, S, H * hd] (before o_proj)."""
    cfg = model.cfg
    B, H, S, hd = q.shape
    group = cfg.num_heads // cfg.num_kv_heads
    # query head hq uses kv head hq // group
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)                  # [B, H, S, L]
    scores = scores.masked_fill(~ok, float("-inf"))
    if cfg.model_type == "gpt_oss":
        # one more logit per head, whose probability is dropped: it only enlarges the denominator
        sink = model.w["model.layers.%d.self_attn.sinks" % layer].view(1, H, 1, 1).expand(B, H, S, 1)
        probs = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]
    else:
        probs = torch.softmax(scores, dim=-1)
    return (probs @ v).transpose(1, 2).reshape(B, S, H * hd)


def attention(model, layer, h):
    """Causal grouped-query self-attention over the whole sequence. h [B, T, D] normed."""
    cfg = model.cfg
    B, T, _ = h.shape
    q, k, v = project_qkv(model, layer, h)
    cos, sin = rotary_cos_sin(torch.arange(T), cfg.head_dim, cfg.rope_theta, h.dtype, cfg)
    q = apply_rotary(q, cos, sin)
    k = apply_rotary(k, cos, sin)
    out = attend(model, layer, q, k, v, allowed_keys(cfg, layer, T))
    return linear(model, out, "model.layers.%d.self_attn.o_proj" % layer)


def router_logits(model, layer, x):
    cfg = model.cfg
    logits = project(model, x, router_name(cfg, layer))
    if cfg.model_type == "gpt_oss":
        logits = logits + model.w[moe_prefix(cfg, layer) + "router.bias"]
    return logits


def route(model, layer, x, allowed=None):
    """x [N, D] normed -> (router probabilities [N, E], top-k weights [N, k], ids [N, k]).
    Ids are in descending logit order. allowed: optional bool [N, E] held masks; the ids are then
    the top-k logits inside the mask and the weights the family's rule applied to those k."""
    cfg = model.cfg
    logits = router_logits(model, layer, x)
    probs = torch.softmax(logits, dim=-1)
    chooser = logits if allowed is None else logits.masked_fill(~allowed, float("-inf"))
    _, top_i = torch.topk(chooser, cfg.top_k, dim=-1, largest=True, sorted=True)
    if cfg.gate_rule == "softmax_of_top_k":
        top_w = torch.softmax(logits.gather(1, top_i), dim=-1)
    else:
        top_w = probs.gather(1, top_i)
        if cfg.gate_rule == "renormalise":
            top_w = top_w / top_w.sum(dim=-1, keepdim=True)
    return probs, top_w, top_i


def swiglu_ffn(model, x, gate, up, down):
    hidden = torch.nn.functional.silu(project(model, x, gate)) * project(model, x, up)
    return project(model, hidden, down)


def expert_ffn(model, layer, j, x):
    cfg = model.cfg
    if cfg.model_type == "gpt_oss":
        gate_up, gate_up_bias, down, down_bias = fused_experts(model, layer)
        y = x @ gate_up[j] + gate_up_bias[j]
        gate, up = y[..., 0::2], y[..., 1::2]                          # interleaved along 2F
        limit, alpha = cfg.swiglu_limit, cfg.swiglu_alpha
        gate = gate.clamp(max=limit)
        up = up.clamp(min=-limit, max=limit)
        return ((up + 1) * gate * torch.sigmoid(alpha * gate)) @ down[j] + down_bias[j]
    g, u, d = expert_names(cfg, layer, j)
    return swiglu_ffn(model, x, g, u, d)


def shared_expert(model, layer, x):
    """Qwen2-MoE: sigmoid(x . shared_expert_gate) * SwiGLU_shared(x); zeros for the others."""
    cfg = model.cfg
    if not cfg.shared_expert_size:
        return torch.zeros_like(x)
    m = moe_prefix(cfg, layer)
    s = m + "shared_expert."
    y = swiglu_ffn(model, x, s + "gate_proj.weight", s + "up_proj.weight", s + "down_proj.weight")
    return torch.sigmoid(x @ model.w[m + "shared_expert_gate.weight"].T) * y


def dense_mlp(model, layer, h):
    m = moe_prefix(model.cfg, layer)
    return swiglu_ffn(model, h, m + "gate_proj.weight", m + "up_proj.weight", m + "down_proj.weight")


def moe(model, layer, h, allowed=None):
    """Sparse MoE: h [B, T, D] normed -> (output [B, T, D], top-k ids [B, T, k]); a dense layer
    gives its MLP and ids of -1."""
    cfg = model.cfg
    B, T, D = h.shape
    if cfg.dense_layers[layer]:
        return dense_mlp(model, layer, h), torch.full((B, T, cfg.top_k), -1, dtype=torch.int64)
    x = h.reshape(B * T, D)
    _, top_w, top_i = route(model, layer, x, allowed)
    out = torch.zeros_like(x)
    for j in range(cfg.num_experts):
        rows, slot = torch.nonzero(top_i == j, as_tuple=True)
        if rows.numel() == 0:
            continue
        y = expert_ffn(model, layer, j, x.index_select(0, rows))
        out.index_add_(0, rows, y * top_w[rows, slot].unsqueeze(-1))
    out = out + shared_expert(model, layer, x)
    return out.view(B, T, D), top_i.view(B, T, cfg.top_k)


def forward(model, tokens, masks=None):
    """tokens int64 [B, T] -> (logits [B, T, V], [per-layer top-k ids int64 [B, T, k]]).
    masks: optional per-layer bool [B * T, E] held masks (None entries: unmasked)."""
    cfg, w = model.cfg, model.w
    tokens = torch.as_tensor(tokens, dtype=torch.int64)
    if tokens.dim() != 2:
        raise ValueError("tokens must be [B, T]")
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= cfg.vocab_size):
        raise ValueError("token id out of range [0, %d)" % cfg.vocab_size)
    x = w["model.embed_tokens.weight"][tokens]
    eps = cfg.rms_norm_eps
    topk = []
    for i in range(cfg.num_layers):
        p = "model.layers.%d." % i
        x = x + attention(model, i, rms_norm(x, w[p + "input_layernorm.weight"], eps))
        y, ids = moe(model, i, rms_norm(x, w[p + "post_attention_layernorm.weight"], eps),
                     None if masks is None else masks[i])
        x = x + y
        topk.append(ids)
    x = rms_norm(x, w["model.norm.weight"], eps)
    return x @ model.lm_head.T, topk


# ---------------------------------------------------------------- alternative computation
# A second, deliberately different evaluation used by the self-checks: token by token with
# a growing key/value cache (attention as explicit per-head dot products), and a dense MoE
# (every expert on every token, combined with a scattered [N, E] weight matrix).

def moe_dense(model, layer, h):
    cfg = model.cfg
    B, T, D = h.shape
    if cfg.dense_layers[layer]:
        return dense_mlp(model, layer, h), torch.full((B, T, cfg.top_k), -1, dtype=torch.int64)
    x = h.reshape(B * T, D)
    _, top_w, top_i = route(model, layer, x)
    gates = torch.zeros(x.shape[0], cfg.num_experts, dtype=x.dtype)
    gates.scatter_(1, top_i, top_w)
    outs = torch.stack([expert_ffn(model, layer, j, x) for j in range(cfg.num_experts)], dim=1)
    out = (gates.unsqueeze(-1) * outs).sum(dim=1) + shared_expert(model, layer, x)
    return out.view(B, T, D), top_i.view(B, T, cfg.top_k)


def forward_incremental(model, tokens):
    """Same result as forward(), computed one position at a time with a KV cache (attention as
    explicit per-head dot products over the cached keys the position may see)."""
    cfg, w = model.cfg, model.w
    tokens = torch.as_tensor(tokens, dtype=torch.int64)
    B, T = tokens.shape
    eps = cfg.rms_norm_eps
    hd = cfg.head_dim
    group = cfg.num_heads // cfg.num_kv_heads
    k_cache = [[] for _ in range(cfg.num_layers)]
    v_cache = [[] for _ in range(cfg.num_layers)]
    logits = []
    topk = [[] for _ in range(cfg.num_layers)]
    for t in range(T):
        x = w["model.embed_tokens.weight"][tokens[:, t:t + 1]]          # [B, 1, D]
        dt = x.dtype
        cos, sin = rotary_cos_sin(torch.tensor([t]), hd, cfg.rope_theta, dt, cfg)
        for i in range(cfg.num_layers):
            p = "model.layers.%d." % i
            h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
            q, k, v = project_qkv(model, i, h)                           # [B, *, 1, hd]
            q = apply_rotary(q, cos, sin)
            k = apply_rotary(k, cos, sin)
            k_cache[i].append(k)
            v_cache[i].append(v)
            first = max(0, t - cfg.sliding_window + 1) if cfg.sliding[i] else 0
            K = torch.cat(k_cache[i], dim=2)[:, :, first:]                # [B, KV, seen, hd]
            V = torch.cat(v_cache[i], dim=2)[:, :, first:]
            heads = []
            for hq in range(cfg.num_heads):
                kv = hq // group
                s = (K[:, kv] * q[:, hq]).sum(-1) / math.sqrt(hd)         # [B, seen]
                if cfg.model_type == "gpt_oss":
                    sink = w[p + "self_attn.sinks"][hq]
                    m = torch.maximum(s.max(-1, keepdim=True).values, sink)
                    e = torch.exp(s - m)
                    a = e / (e.sum(-1, keepdim=True) + torch.exp(sink - m))
                else:
                    a = torch.softmax(s, dim=-1)
                heads.append((a.unsqueeze(-1) * V[:, kv]).sum(1))         # [B, hd]
            att = torch.cat(heads, dim=-1).unsqueeze(1)                   # [B, 1, H*hd]
            x = x + linear(model, att, p + "self_attn.o_proj")
            y, ids = moe_dense(model, i, rms_norm(x, w[p + "post_attention_layernorm.weight"], eps))
            x = x + y
            topk[i].append(ids)
        x = rms_norm(x, w["model.norm.weight"], eps)
        logits.append(x @ model.lm_head.T)
    return torch.cat(logits, dim=1), [torch.cat(t, dim=1) for t in topk]


def router_margins(model, tokens):
    """Per layer, the gap between the k-th and (k+1)-th router logit, [B, T] (+inf when k == E
    or on a dense layer). Computed along the same forward pass as forward()."""
    cfg, w = model.cfg, model.w
    tokens = torch.as_tensor(tokens, dtype=torch.int64)
    B, T = tokens.shape
    x = w["model.embed_tokens.weight"][tokens]
    eps = cfg.rms_norm_eps
    gaps = []
    for i in range(cfg.num_layers):
        p = "model.layers.%d." % i
        x = x + attention(model, i, rms_norm(x, w[p + "input_layernorm.weight"], eps))
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if cfg.top_k < cfg.num_experts and not cfg.dense_layers[i]:
            probs, _, _ = route(model, i, h.reshape(B * T, -1))
            s = torch.sort(probs, dim=-1, descending=True).values
            gaps.append((s[:, cfg.top_k - 1] - s[:, cfg.top_k]).view(B, T))
        else:
            gaps.append(torch.full((B, T), float("inf"), dtype=h.dtype))
        y, _ = moe(model, i, h)
        x = x + y
    return gaps


if __name__ == "__main__":
    import argparse
    import numpy as np

    ap = argparse.ArgumentParser(description="Print reference logits stats for a model dir.")
    ap.add_argument("model")
    ap.add_argument("--tokens", help=".npy [B, T]; default: tokens.npy in the model dir")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    a = ap.parse_args()
    m = load_model(a.model, getattr(torch, a.dtype))
    tok = np.load(a.tokens or os.path.join(a.model, "tokens.npy")).astype(np.int64)
    lg, tk = forward(m, torch.from_numpy(tok))
    print("logits", tuple(lg.shape), "mean %.6g std %.6g" % (lg.mean().item(), lg.std().item()))
    for i, t in enumerate(tk):
        print("layer", i, "top-k of token 0:", t[0, 0].tolist())
