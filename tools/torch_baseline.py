#!/usr/bin/env python3
"""Baseline for tools/bench_train.sh: the same DeepSeek-V3-shaped model trained in PyTorch eager on CPU.

What a user would write without this project: MLA attention (q and kv low-rank paths with their norms,
decoupled RoPE key shared by the heads), dense SwiGLU for the first `first_k_dense_replace` layers, MoE
layers (sigmoid scores, correction bias for the selection only, group-limited top-k, normalized and
scaled weights, routed experts dispatched by a loop over experts as Hugging Face's DeepseekV3MoE does,
shared experts), pre-RMSNorm, untied head, cross-entropy, AdamW. FP32 throughout (the issue's baseline).
Tokens are random: this measures speed only.

    tools/torch_baseline.py --config=configs/bench_wide.textproto [--steps=12] [--threads=1,2]

Reads the model shape and the batch from the config's `key: value` lines. Prints, per thread count, one
line `TORCH_RESULT {"threads": T, "tokens_per_s": ..., "step_s": ...}` (median over the steps after two
warm-up steps). Needs Debian's python3-torch (run it with /usr/bin/python3).
"""
import argparse
import json
import math
import re
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


def read_config(path):
    """The scalar `key: value` fields of the model and batch blocks of a config textproto."""
    values = {}
    blocks = []
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if m := re.match(r"^(\w+)\s*\{$", line):
            blocks.append(m.group(1))
        elif line == "}":
            blocks.pop()
        elif m := re.match(r'^(\w+)\s*:\s*"?([^"]*)"?$', line):
            values[".".join(blocks + [m.group(1)])] = m.group(2)
    return values


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def rope(x, cos, sin):  # interleaved pairs (x0, x1), as the HF DeepseekV3 checkpoint layout implies
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class SwiGLU(nn.Module):
    def __init__(self, hidden, width):
        super().__init__()
        self.gate = nn.Linear(hidden, width, bias=False)
        self.up = nn.Linear(hidden, width, bias=False)
        self.down = nn.Linear(width, hidden, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class MLA(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.nope, self.rope_dim, self.v = c["heads"], c["nope"], c["rope"], c["v"]
        self.q_a = nn.Linear(c["hidden"], c["q_lora"], bias=False)
        self.q_norm = RMSNorm(c["q_lora"], c["eps"])
        self.q_b = nn.Linear(c["q_lora"], self.h * (self.nope + self.rope_dim), bias=False)
        self.kv_a = nn.Linear(c["hidden"], c["kv_lora"] + self.rope_dim, bias=False)
        self.kv_norm = RMSNorm(c["kv_lora"], c["eps"])
        self.kv_b = nn.Linear(c["kv_lora"], self.h * (self.nope + self.v), bias=False)
        self.o = nn.Linear(self.h * self.v, c["hidden"], bias=False)
        self.kv_lora = c["kv_lora"]

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_b(self.q_norm(self.q_a(x))).view(b, t, self.h, self.nope + self.rope_dim)
        q_nope, q_rope = q.split([self.nope, self.rope_dim], dim=-1)
        kv_a = self.kv_a(x)
        latent, k_rope = kv_a.split([self.kv_lora, self.rope_dim], dim=-1)
        kv = self.kv_b(self.kv_norm(latent)).view(b, t, self.h, self.nope + self.v)
        k_nope, value = kv.split([self.nope, self.v], dim=-1)
        q_rope = rope(q_rope, cos, sin)
        k_rope = rope(k_rope.unsqueeze(2), cos, sin).expand(b, t, self.h, self.rope_dim)
        query = torch.cat([q_nope, q_rope], -1).transpose(1, 2)
        key = torch.cat([k_nope, k_rope], -1).transpose(1, 2)
        # Debian's torch 1.13 has no fused scaled_dot_product_attention: the eager formula.
        scores = query @ key.transpose(-1, -2) / math.sqrt(self.nope + self.rope_dim)
        causal = torch.ones(t, t, dtype=torch.bool).triu(1)
        out = scores.masked_fill(causal, float("-inf")).softmax(-1) @ value.transpose(1, 2)
        return self.o(out.transpose(1, 2).reshape(b, t, self.h * self.v))


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.k, self.groups, self.topk_groups = c["topk"], c["groups"], c["topk_groups"]
        self.scale = c["routed_scale"]
        self.router = nn.Linear(c["hidden"], c["experts"], bias=False)
        self.register_buffer("bias", torch.zeros(c["experts"]))
        self.experts = nn.ModuleList(SwiGLU(c["hidden"], c["expert_width"]) for _ in range(c["experts"]))
        self.shared = SwiGLU(c["hidden"], c["expert_width"] * c["shared"]) if c["shared"] else None

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        scores = torch.sigmoid(self.router(x))
        with torch.no_grad():  # selection: scores + bias, best groups by their top-2 sum, then top-k
            biased = scores + self.bias
            n = x.shape[0]
            grouped = biased.view(n, self.groups, -1)
            group_score = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(-1)
            keep = torch.zeros_like(group_score).scatter_(1, group_score.topk(self.topk_groups, -1).indices, 1)
            masked = biased.masked_fill(~keep.bool().repeat_interleave(grouped.shape[-1], 1), float("-inf"))
            chosen = masked.topk(self.k, dim=-1).indices
        weights = scores.gather(1, chosen)
        weights = weights / weights.sum(-1, keepdim=True) * self.scale
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):  # Hugging Face DeepseekV3MoE's loop
            rows, slot = (chosen == e).nonzero(as_tuple=True)
            if rows.numel():
                out.index_add_(0, rows, expert(x[rows]) * weights[rows, slot].unsqueeze(-1))
        if self.shared is not None:
            out = out + self.shared(x)
        return out.view(shape)


class Block(nn.Module):
    def __init__(self, c, dense):
        super().__init__()
        self.attn_norm = RMSNorm(c["hidden"], c["eps"])
        self.attn = MLA(c)
        self.mlp_norm = RMSNorm(c["hidden"], c["eps"])
        self.mlp = SwiGLU(c["hidden"], c["dense_width"]) if dense else MoE(c)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed = nn.Embedding(c["vocab"], c["hidden"])
        self.blocks = nn.ModuleList(Block(c, i < c["dense_layers"]) for i in range(c["layers"]))
        self.norm = RMSNorm(c["hidden"], c["eps"])
        self.head = nn.Linear(c["hidden"], c["vocab"], bias=False)
        inv = 1.0 / (c["theta"] ** (torch.arange(0, c["rope"], 2).float() / c["rope"]))
        angles = torch.outer(torch.arange(c["seq"]).float(), inv)
        self.register_buffer("cos", angles.cos()[None, :, None, :])
        self.register_buffer("sin", angles.sin()[None, :, None, :])
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=c["init"])

    def forward(self, tokens, targets):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    v = read_config(args.config)
    get = lambda key, default=None: v.get(f"model.{key}", default)
    c = dict(vocab=int(get("vocab_size")), hidden=int(get("hidden_size")), layers=int(get("num_hidden_layers")),
             dense_layers=int(get("first_k_dense_replace", 0)), heads=int(get("num_attention_heads")),
             q_lora=int(get("q_lora_rank")), kv_lora=int(get("kv_lora_rank")), nope=int(get("qk_nope_head_dim")),
             rope=int(get("qk_rope_head_dim")), v=int(get("v_head_dim")), dense_width=int(get("intermediate_size")),
             expert_width=int(get("moe_intermediate_size")), experts=int(get("n_routed_experts")),
             topk=int(get("num_experts_per_tok")), shared=int(get("n_shared_experts", 0)),
             groups=int(get("n_group", 1)), topk_groups=int(get("topk_group", 1)),
             routed_scale=float(get("routed_scaling_factor", 1.0)), eps=float(get("rms_norm_eps", 1e-6)),
             theta=float(get("rope_theta", 10000.0)), init=float(get("initializer_range", 0.02)),
             seq=int(v["batch.seq_len"]))
    batch = int(v["batch.micro_batch_size"])
    torch.manual_seed(0)
    model = Model(c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = torch.randint(0, c["vocab"], (batch, c["seq"] + 1))
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        times = []
        for _ in range(args.steps + 2):
            start = time.perf_counter()
            loss = model(tokens[:, :-1], tokens[:, 1:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            times.append(time.perf_counter() - start)
            assert math.isfinite(loss.item())
        step = statistics.median(times[2:])
        print("TORCH_RESULT " + json.dumps({"threads": threads, "tokens_per_s": batch * c["seq"] / step,
                                            "step_s": step, "torch": torch.__version__,
                                            "parameters": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
