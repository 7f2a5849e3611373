#!/usr/bin/env python3
"""Baseline: time one Hugging Face transformers DeepseekV3 training step on one GPU.

Builds DeepseekV3ForCausalLM from the config.json our trainer writes, trains it on random tokens with
the same numeric recipe as our trainer: FP32 parameters (the master weights) with BF16 forward/backward
via torch.autocast, AdamW with FP32 moments, global-norm clipping at 1.0. Keeping FP32 params rather
than casting the model to BF16 makes memory (params + grads + 2 moments in FP32) and optimizer traffic
comparable with ours; autocast runs the matmuls in BF16 like our kernels.

Reports median/mean step time, tokens/s (B*T per step), TFLOP/s and MFU when --flops_per_token is
given, peak allocated GPU memory, the parameter count, and one JSON line prefixed "HF_RESULT ".
Exit status: 0 ok, 2 bad arguments, 3 transformers has no DeepseekV3, 4 CUDA out of memory, 5 other.

What the transformers source shows (models/deepseek_v3/{configuration,modeling}_deepseek_v3.py):
- DeepseekV3Config / DeepseekV3Model / DeepseekV3ForCausalLM(config) appeared in v4.51 (April 2025).
  Config args: vocab_size hidden_size intermediate_size moe_intermediate_size num_hidden_layers
  num_attention_heads num_key_value_heads n_shared_experts n_routed_experts routed_scaling_factor
  kv_lora_rank q_lora_rank qk_rope_head_dim v_head_dim qk_nope_head_dim n_group topk_group
  num_experts_per_tok first_k_dense_replace norm_topk_prob hidden_act max_position_embeddings
  initializer_range rms_norm_eps use_cache pad/bos/eos_token_id pretraining_tp tie_word_embeddings
  rope_theta+rope_scaling (v5: rope_parameters; rope_scaling/rope_theta are still accepted)
  rope_interleave attention_bias attention_dropout. Other keys (num_nextn_predict_layers, topk_method,
  scoring_func, moe_layer_freq, aux_loss_alpha, ...) become plain attributes and are unused: no MTP
  module, no auxiliary loss, e_score_correction_bias is a buffer nobody updates.
- v4.51 needs q_lora_rank set (it always builds q_a_proj); later versions accept q_lora_rank=None.
- Attention: "eager", "sdpa" (the v5 default) and "flash_attention_2" (needs flash_attn; HF pads V
  from v_head_dim to qk_head_dim for it). MLA is computed naively: K and V are expanded per head.
- MoE can train in every version (top-k indices are chosen without grad; the gathered sigmoid weights
  carry the gradient to the router), but it is slow:
  * v4.x (4.51 on): experts are an nn.ModuleList of DeepseekV3MLP, and DeepseekV3MoE.moe loops in Python
    over ALL n_routed_experts, with a host sync (numel() > 0) per expert per layer.
  * v5: experts are fused 3-D parameters (DeepseekV3NaiveMoe, renamed DeepseekV3Experts later:
    gate_up_proj [E, 2I, H], down_proj [E, H, I]) dispatched by config._experts_implementation:
    "eager" (loop over the experts that got tokens), "batched_mm" (bmm over per-token copies of the
    expert weights: huge memory), "grouped_mm" (torch._grouped_mm, the v5 default). grouped_mm is not
    autocast-aware: with FP32 params the MoE input (an FP32 RMSNorm output) meets FP32 weights, so the
    routed experts run in FP32/TF32 through PyTorch's fallback (torch >= 2.9; older torch rejects
    non-BF16). So this script defaults to --experts_impl eager, whose F.linear calls autocast to BF16.
"""

import argparse
import json
import math
import statistics
import sys
import time
import traceback

try:
    import torch
    import transformers
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
except Exception as e:  # ImportError, or the RuntimeError transformers' lazy import raises for a broken module
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if "torch" not in sys.modules or "transformers" not in sys.modules:
        print(f"HF baseline unavailable: cannot import torch/transformers ({reason})", flush=True)
    else:
        version = getattr(sys.modules["transformers"], "__version__", "?")
        print(f"HF baseline unavailable: transformers {version} has no usable DeepseekV3 (needs >= 4.51): "
              f"{reason}", flush=True)
    sys.exit(3)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config_json", required=True, help="HF DeepseekV3 config.json (ours)")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--steps", type=int, required=True, help="timed steps")
    p.add_argument("--warmup", type=int, required=True, help="untimed steps before")
    p.add_argument("--flops_per_token", type=float, default=None, help="training FLOPs per token (ours)")
    p.add_argument("--peak_tflops", type=float, default=989.0, help="dense BF16 peak (H100/H200: 989)")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    p.add_argument("--experts_impl", default="eager", choices=["eager", "grouped_mm", "batched_mm", "hf_default"],
                   help="v5 only (v4 always loops over all experts); see the header")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out_json", default=None, help="also write the HF_RESULT object here")
    a = p.parse_args()
    if a.batch < 1 or a.seq < 2 or a.steps < 1 or a.warmup < 0:
        p.error("need --batch >= 1, --seq >= 2, --steps >= 1, --warmup >= 0")
    return a


def load_config(args):
    with open(args.config_json) as f:
        d = json.load(f)
    if d.get("model_type", "deepseek_v3") != "deepseek_v3":
        print(f"warning: model_type {d['model_type']!r} in {args.config_json}; building DeepseekV3 anyway")
    for k in ("model_type", "auto_map", "quantization_config", "torch_dtype", "dtype"):
        d.pop(k, None)  # model_type is fixed by the class; params are FP32 whatever the file says
    if "num_nextn_predict_layers" in d:
        d["num_nextn_predict_layers"] = 0  # HF has no MTP module; keep the attribute harmless
    # v5 configs are strict dataclasses: an int (e.g. 1) is rejected where a float is declared.
    defaults = DeepseekV3Config()
    for k, v in d.items():
        if type(v) is int and isinstance(getattr(defaults, k, None), float):
            d[k] = float(v)
    d["use_cache"] = False
    d["attn_implementation"] = args.attn  # popped by PretrainedConfig in v4 and v5
    if args.experts_impl != "hf_default":
        d["experts_implementation"] = args.experts_impl  # v5 reads it; v4 keeps an unused attribute
    try:
        return DeepseekV3Config(**d)
    except Exception as e:  # drop keys the class does not declare, only if the full dict was refused
        import inspect
        known = set(inspect.signature(DeepseekV3Config.__init__).parameters)
        known |= set(getattr(DeepseekV3Config, "__dataclass_fields__", {}))
        known |= {"rope_scaling", "rope_theta", "attn_implementation", "experts_implementation", "use_cache"}
        dropped = sorted(k for k in d if k not in known)
        if not dropped:
            raise
        print(f"note: DeepseekV3Config refused the dict ({type(e).__name__}: {e}); retrying without {dropped}")
        return DeepseekV3Config(**{k: v for k, v in d.items() if k not in dropped})


def moe_description(model):
    for m in model.modules():
        if type(m).__name__ == "DeepseekV3MoE":
            experts = type(m.experts).__name__
            if experts == "ModuleList":
                return "ModuleList(python loop over all experts)"
            return f"{experts}[{getattr(model.config, '_experts_implementation', None)}]"
    return "no MoE layer"


def finite_or_none(x):
    return x if x is not None and math.isfinite(x) else None


def emit(result, args, human):
    print(human, flush=True)
    print("HF_RESULT " + json.dumps(result), flush=True)
    if args.out_json:
        with open(args.out_json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


def main():
    args = parse_args()
    result = {
        "tokens_per_s": None, "step_time_s_median": None, "step_time_s_mean": None, "tflops": None,
        "mfu": None, "max_mem_gib": None, "loss_first": None, "loss_last": None,
        "torch_version": torch.__version__, "transformers_version": transformers.__version__,
        "attn_implementation": args.attn, "experts_implementation": args.experts_impl, "moe_impl": None,
        "batch": args.batch, "seq": args.seq, "steps": args.steps, "warmup": args.warmup,
        "n_params": None, "optimizer": None,
    }
    oom_types = tuple(t for t in (getattr(torch.cuda, "OutOfMemoryError", None),) if t is not None)
    try:
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device visible")
        torch.backends.cuda.matmul.allow_tf32 = True  # only FP32 matmuls outside autocast are affected
        config = load_config(args)
        torch.manual_seed(args.seed)
        with torch.device("cuda"):  # initialise the weights on the GPU (much faster than on the CPU)
            model = DeepseekV3ForCausalLM(config)
        model.to(device="cuda", dtype=torch.float32).train()
        result["attn_implementation"] = getattr(model.config, "_attn_implementation", args.attn)
        result["experts_implementation"] = getattr(model.config, "_experts_implementation", None)
        result["moe_impl"] = moe_description(model)
        params = [p for p in model.parameters() if p.requires_grad]
        result["n_params"] = n_params = sum(p.numel() for p in model.parameters())
        print(f"HF DeepseekV3ForCausalLM: {n_params:,} parameters ({n_params / 1e9:.3f} B), "
              f"attn={result['attn_implementation']}, moe={result['moe_impl']}", flush=True)

        # Weight decay on matrices only, like our trainer (norm weights and other vectors: none).
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        hyper = dict(lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
        try:
            opt = torch.optim.AdamW(groups, fused=True, **hyper)
            result["optimizer"] = "AdamW(fused)"
        except (TypeError, RuntimeError):
            opt = torch.optim.AdamW(groups, **hyper)
            result["optimizer"] = "AdamW"

        gen = torch.Generator(device="cuda").manual_seed(args.seed + 1)
        tokens = torch.randint(0, config.vocab_size, (args.warmup + args.steps, args.batch, args.seq),
                               device="cuda", generator=gen)

        def train_step(ids):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                # labels = inputs: HF shifts them inside (mean CE over the T-1 next-token positions).
                loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach()

        losses, times = [], []
        for i in range(args.warmup + args.steps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            losses.append(train_step(tokens[i]))
            torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
    except Exception as e:
        max_mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        result["max_mem_gib"] = max_mem
        if isinstance(e, oom_types) or "out of memory" in str(e):
            result["error"] = "oom"
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            emit(result, args, f"HF baseline: CUDA out of memory at B={args.batch} T={args.seq} "
                               f"(peak allocated {max_mem or 0:.1f} GiB): {first}")
            sys.exit(4)
        traceback.print_exc()
        result["error"] = f"{type(e).__name__}: {e}"[:500]
        emit(result, args, f"HF baseline failed: {type(e).__name__}: {e}".splitlines()[0])
        sys.exit(5)

    tokens_per_step = args.batch * args.seq
    median, mean = statistics.median(times), statistics.fmean(times)
    tok_s = tokens_per_step / median
    result.update(tokens_per_s=tok_s, step_time_s_median=median, step_time_s_mean=mean,
                  max_mem_gib=torch.cuda.max_memory_allocated() / 2**30,
                  loss_first=finite_or_none(losses[0].item()), loss_last=finite_or_none(losses[-1].item()))
    flops_txt = ""
    if args.flops_per_token:
        result["tflops"] = args.flops_per_token * tok_s / 1e12
        result["mfu"] = result["tflops"] / args.peak_tflops
        flops_txt = f", {result['tflops']:.1f} TFLOP/s (MFU {100 * result['mfu']:.1f}% of {args.peak_tflops:g})"
    emit(result, args,
         f"HF DeepseekV3 train step B={args.batch} T={args.seq}: median {1e3 * median:.1f} ms, "
         f"mean {1e3 * mean:.1f} ms over {args.steps} steps (+{args.warmup} warm-up), {tok_s:,.0f} tokens/s"
         f"{flops_txt}, peak {result['max_mem_gib']:.2f} GiB, loss {losses[0].item():.4f} -> "
         f"{losses[-1].item():.4f} [torch {torch.__version__}, transformers {transformers.__version__}, "
         f"attn {result['attn_implementation']}, moe {result['moe_impl']}]")


if __name__ == "__main__":
    main()
