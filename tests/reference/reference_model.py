"""Independent PyTorch reference for decoder-only MoE transformers in Hugging Face layout.

Families (config.json "model_type"):
  * "mixtral": router softmax over all experts, top-k, weights renormalised to sum 1;
               experts model.layers.{i}.block_sparse_moe.experts.{j}.{w1,w3,w2}.weight
  * "olmoe":   RMSNorm over the whole q / k projection outputs (q_norm, k_norm) before the
               head split and rotary; top-k softmax probabilities renormalised only when
               config "norm_topk_prob" is true (false for the released OLMoE);
               experts model.layers.{i}.mlp.experts.{j}.{gate_proj,up_proj,down_proj}.weight

Both: pre-norm residual blocks, RMSNorm, rotary embedding in the "rotate_half"
(non-interleaved) convention, causal grouped-query attention, SwiGLU experts, no biases.

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


class Config:
    """The config.json keys the forward pass needs, with HF defaults."""

    def __init__(self, raw):
        self.raw = raw
        self.model_type = raw["model_type"]
        if self.model_type not in ("mixtral", "olmoe"):
            raise ValueError("unsupported model_type %r" % self.model_type)
        self.vocab_size = int(raw["vocab_size"])
        self.hidden_size = int(raw["hidden_size"])
        self.intermediate_size = int(raw["intermediate_size"])
        self.num_layers = int(raw["num_hidden_layers"])
        self.num_heads = int(raw["num_attention_heads"])
        self.num_kv_heads = int(raw.get("num_key_value_heads") or self.num_heads)
        head_dim = raw.get("head_dim")
        self.head_dim = int(head_dim) if head_dim else self.hidden_size // self.num_heads
        self.rope_theta = float(raw.get("rope_theta", 10000.0))
        self.rms_norm_eps = float(raw.get("rms_norm_eps", 1e-5))
        self.tie_word_embeddings = bool(raw.get("tie_word_embeddings", False))
        self.max_position_embeddings = int(raw.get("max_position_embeddings", 4096))
        self.top_k = int(raw["num_experts_per_tok"])
        if self.model_type == "mixtral":
            self.num_experts = int(raw["num_local_experts"])
            self.norm_topk_prob = True
            self.clip_qkv = None
        else:
            self.num_experts = int(raw["num_experts"])
            self.norm_topk_prob = bool(raw.get("norm_topk_prob", False))
            self.clip_qkv = raw.get("clip_qkv")
        # things this reference does not implement: refuse rather than silently differ
        if raw.get("hidden_act", "silu") != "silu":
            raise ValueError("hidden_act %r not supported" % raw["hidden_act"])
        if raw.get("attention_bias", False):
            raise ValueError("attention_bias not supported")
        if raw.get("rope_scaling") is not None:
            raise ValueError("rope_scaling not supported")
        if raw.get("sliding_window") is not None:
            raise ValueError("sliding_window not supported")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even")
        if not 1 <= self.top_k <= self.num_experts:
            raise ValueError("num_experts_per_tok must be in [1, num_experts]")


def weight_names(cfg):
    """Every tensor name of the checkpoint, in the HF module order, with its shape."""
    D, F, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    Hd, KVd = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    out = [("model.embed_tokens.weight", [V, D])]
    for i in range(cfg.num_layers):
        p = "model.layers.%d." % i
        out.append((p + "input_layernorm.weight", [D]))
        out.append((p + "self_attn.q_proj.weight", [Hd, D]))
        out.append((p + "self_attn.k_proj.weight", [KVd, D]))
        out.append((p + "self_attn.v_proj.weight", [KVd, D]))
        out.append((p + "self_attn.o_proj.weight", [D, Hd]))
        if cfg.model_type == "olmoe":
            out.append((p + "self_attn.q_norm.weight", [Hd]))
            out.append((p + "self_attn.k_norm.weight", [KVd]))
        out.append((p + "post_attention_layernorm.weight", [D]))
        moe = p + ("block_sparse_moe." if cfg.model_type == "mixtral" else "mlp.")
        out.append((moe + "gate.weight", [cfg.num_experts, D]))
        for j in range(cfg.num_experts):
            e = moe + "experts.%d." % j
            if cfg.model_type == "mixtral":
                out.append((e + "w1.weight", [F, D]))
                out.append((e + "w2.weight", [D, F]))
                out.append((e + "w3.weight", [F, D]))
            else:
                out.append((e + "gate_proj.weight", [F, D]))
                out.append((e + "up_proj.weight", [F, D]))
                out.append((e + "down_proj.weight", [D, F]))
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
    mid = "block_sparse_moe" if cfg.model_type == "mixtral" else "mlp"
    return "model.layers.%d.%s.gate.weight" % (layer, mid)


class Model:
    def __init__(self, cfg, weights):
        self.cfg = cfg
        self.w = weights

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
    (a tied checkpoint may still carry an lm_head.weight, which is then ignored)."""
    cfg = load_config(directory)
    raw = safetensors_io.load_checkpoint(directory)
    expected = weight_names(cfg)
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
    weights = {n: raw[n].to(dtype) for n in names}
    return Model(cfg, weights)


# ---------------------------------------------------------------- building blocks

def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def rotary_cos_sin(positions, head_dim, theta, dtype):
    """cos, sin of shape [len(positions), head_dim], computed in float64 then cast."""
    half = head_dim // 2
    inv_freq = 1.0 / (theta ** (torch.arange(half, dtype=torch.float64) * 2.0 / head_dim))
    angle = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    angle = torch.cat([angle, angle], dim=-1)
    return angle.cos().to(dtype), angle.sin().to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x, cos, sin):
    """x [..., T, hd]; cos, sin [T, hd]."""
    return x * cos + rotate_half(x) * sin


def project_qkv(model, layer, h):
    """h [B, T, D] (already normed) -> q [B, H, T, hd], k, v [B, KV, T, hd], before rotary."""
    cfg, w = model.cfg, model.w
    p = "model.layers.%d.self_attn." % layer
    B, T, _ = h.shape
    q = h @ w[p + "q_proj.weight"].T
    k = h @ w[p + "k_proj.weight"].T
    v = h @ w[p + "v_proj.weight"].T
    if cfg.model_type == "olmoe":
        q = rms_norm(q, w[p + "q_norm.weight"], cfg.rms_norm_eps)
        k = rms_norm(k, w[p + "k_norm.weight"], cfg.rms_norm_eps)
    if cfg.clip_qkv is not None:
        c = float(cfg.clip_qkv)
        q, k, v = q.clamp(-c, c), k.clamp(-c, c), v.clamp(-c, c)
    hd = cfg.head_dim
    q = q.view(B, T, cfg.num_heads, hd).transpose(1, 2)
    k = k.view(B, T, cfg.num_kv_heads, hd).transpose(1, 2)
    v = v.view(B, T, cfg.num_kv_heads, hd).transpose(1, 2)
    return q, k, v


def attention(model, layer, h):
    """Causal grouped-query self-attention over the whole sequence. h [B, T, D] normed."""
    cfg, w = model.cfg, model.w
    B, T, _ = h.shape
    q, k, v = project_qkv(model, layer, h)
    cos, sin = rotary_cos_sin(torch.arange(T), cfg.head_dim, cfg.rope_theta, h.dtype)
    q = apply_rotary(q, cos, sin)
    k = apply_rotary(k, cos, sin)
    group = cfg.num_heads // cfg.num_kv_heads
    # query head hq uses kv head hq // group
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(cfg.head_dim)       # [B, H, T, T]
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(B, T, cfg.num_heads * cfg.head_dim)
    return out @ w["model.layers.%d.self_attn.o_proj.weight" % layer].T


def route(model, layer, x):
    """x [N, D] normed -> (router probabilities [N, E], top-k weights [N, k], ids [N, k]).
    Ids are in descending probability order; weights renormalised if the family says so."""
    cfg = model.cfg
    logits = x @ model.w[router_name(cfg, layer)].T
    probs = torch.softmax(logits, dim=-1)
    top_w, top_i = torch.topk(probs, cfg.top_k, dim=-1, largest=True, sorted=True)
    if cfg.norm_topk_prob:
        top_w = top_w / top_w.sum(dim=-1, keepdim=True)
    return probs, top_w, top_i


def expert_ffn(model, layer, j, x):
    g, u, d = expert_names(model.cfg, layer, j)
    w = model.w
    return (torch.nn.functional.silu(x @ w[g].T) * (x @ w[u].T)) @ w[d].T


def moe(model, layer, h):
    """Sparse MoE: h [B, T, D] normed -> (output [B, T, D], top-k ids [B, T, k])."""
    cfg = model.cfg
    B, T, D = h.shape
    x = h.reshape(B * T, D)
    _, top_w, top_i = route(model, layer, x)
    out = torch.zeros_like(x)
    for j in range(cfg.num_experts):
        rows, slot = torch.nonzero(top_i == j, as_tuple=True)
        if rows.numel() == 0:
            continue
        y = expert_ffn(model, layer, j, x.index_select(0, rows))
        out.index_add_(0, rows, y * top_w[rows, slot].unsqueeze(-1))
    return out.view(B, T, D), top_i.view(B, T, cfg.top_k)


def forward(model, tokens):
    """tokens int64 [B, T] -> (logits [B, T, V], [per-layer top-k ids int64 [B, T, k]])."""
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
        y, ids = moe(model, i, rms_norm(x, w[p + "post_attention_layernorm.weight"], eps))
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
    x = h.reshape(B * T, D)
    _, top_w, top_i = route(model, layer, x)
    gates = torch.zeros(x.shape[0], cfg.num_experts, dtype=x.dtype)
    gates.scatter_(1, top_i, top_w)
    outs = torch.stack([expert_ffn(model, layer, j, x) for j in range(cfg.num_experts)], dim=1)
    return (gates.unsqueeze(-1) * outs).sum(dim=1).view(B, T, D), top_i.view(B, T, cfg.top_k)


def forward_incremental(model, tokens):
    """Same result as forward(), computed one position at a time with a KV cache."""
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
        cos, sin = rotary_cos_sin(torch.tensor([t]), hd, cfg.rope_theta, dt)
        for i in range(cfg.num_layers):
            p = "model.layers.%d." % i
            h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
            q, k, v = project_qkv(model, i, h)                           # [B, *, 1, hd]
            q = apply_rotary(q, cos, sin)
            k = apply_rotary(k, cos, sin)
            k_cache[i].append(k)
            v_cache[i].append(v)
            K = torch.cat(k_cache[i], dim=2)                              # [B, KV, t+1, hd]
            V = torch.cat(v_cache[i], dim=2)
            heads = []
            for hq in range(cfg.num_heads):
                kv = hq // group
                s = (K[:, kv] * q[:, hq]).sum(-1) / math.sqrt(hd)         # [B, t+1]
                a = torch.softmax(s, dim=-1)
                heads.append((a.unsqueeze(-1) * V[:, kv]).sum(1))         # [B, hd]
            att = torch.cat(heads, dim=-1).unsqueeze(1)                   # [B, 1, H*hd]
            x = x + att @ w[p + "self_attn.o_proj.weight"].T
            y, ids = moe_dense(model, i, rms_norm(x, w[p + "post_attention_layernorm.weight"], eps))
            x = x + y
            topk[i].append(ids)
        x = rms_norm(x, w["model.norm.weight"], eps)
        logits.append(x @ model.lm_head.T)
    return torch.cat(logits, dim=1), [torch.cat(t, dim=1) for t in topk]


def router_margins(model, tokens):
    """Per layer, the gap between the k-th and (k+1)-th router probability, [B, T]
    (+inf when k == E). Computed along the same forward pass as forward()."""
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
        probs, _, _ = route(model, i, h.reshape(B * T, -1))
        if cfg.top_k < cfg.num_experts:
            s = torch.sort(probs, dim=-1, descending=True).values
            gaps.append((s[:, cfg.top_k - 1] - s[:, cfg.top_k]).view(B, T))
        else:
            gaps.append(torch.full((B, T), float("inf"), dtype=probs.dtype))
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
