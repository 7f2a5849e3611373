#!/usr/bin/env python3
"""Compares two training runs: the loss at every step (metrics.jsonl) and, if both exported their
final weights (train --export_hf), every tensor: ||p - p_ref|| / ||p_ref||.

  compare_runs.py REF_DIR RUN_DIR --loss_rtol=1e-5 [--param_rtol=1e-4]

Standard library only (reads safetensors F32 directly), so it runs on any machine with python3."""
import argparse
import array
import json
import math
import os
import struct
import sys


def read_metrics(run_dir):
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return {r["step"]: r for r in rows}


def read_safetensors_f32(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        begin, end = info["data_offsets"]
        a = array.array("f")
        a.frombytes(data[begin:end])
        if sys.byteorder != "little":
            a.byteswap()
        out[name] = a
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    ap.add_argument("run")
    ap.add_argument("--loss_rtol", type=float, required=True)
    ap.add_argument("--param_rtol", type=float, default=None)
    args = ap.parse_args()

    ref, run = read_metrics(args.ref), read_metrics(args.run)
    assert sorted(ref) == sorted(run), f"steps differ: {sorted(ref)} vs {sorted(run)}"
    assert ref, "no steps to compare"
    worst, keys = 0.0, set()
    for step in sorted(ref):
        # The losses of the objective the reference reports: main, MTP (weighted and per depth) and
        # validation. Not balance_loss: a small regulariser whose counts f are piecewise constant.
        for key in sorted(ref[step]):
            if key not in ("loss", "val_loss", "val_mtp_loss") and not key.startswith("mtp_loss"):
                continue
            assert key in run[step], f"step {step}: {key} missing from {args.run}"
            a, b = ref[step][key], run[step][key]
            rel = abs(a - b) / abs(a)
            worst = max(worst, rel)
            keys.add(key)
            if rel > args.loss_rtol:
                sys.exit(f"step {step}: {key} {b} vs reference {a} (relative {rel:.3g} > {args.loss_rtol})")
    print(f"{', '.join(sorted(keys))} agree over {len(ref)} steps (max relative difference {worst:.3g})")

    if args.param_rtol is not None:
        pa = read_safetensors_f32(os.path.join(args.ref, "hf", "model.safetensors"))
        pb = read_safetensors_f32(os.path.join(args.run, "hf", "model.safetensors"))
        assert set(pa) == set(pb), set(pa) ^ set(pb)
        worst_p, worst_name = 0.0, ""
        for name in sorted(pa):
            x, y = pa[name], pb[name]
            assert len(x) == len(y), name
            num = math.sqrt(sum((u - v) ** 2 for u, v in zip(x, y)))
            den = math.sqrt(sum(u * u for u in x)) or 1.0
            if num / den > worst_p:
                worst_p, worst_name = num / den, name
            if num / den > args.param_rtol:
                sys.exit(f"{name}: ||p - p_ref|| / ||p_ref|| = {num / den:.3g} > {args.param_rtol}")
        print(f"{len(pa)} tensors agree (max relative difference {worst_p:.3g} in {worst_name})")


if __name__ == "__main__":
    main()
