#!/usr/bin/env python3
"""Writes two broken copies of a Hugging Face directory for error-path tests (standard library only):
OUT/missing (one tensor removed) and OUT/wrong_shape (model.norm.weight cut to half its length).
  make_bad_safetensors.py HF_DIR OUT_DIR"""
import json
import os
import shutil
import struct
import sys


def main():
    src, out = sys.argv[1], sys.argv[2]
    raw = open(os.path.join(src, "model.safetensors"), "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]

    def write(name, drop=None, shrink=None):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(src, "config.json"), d)
        new, blobs, offset = {}, [], 0
        for k, v in header.items():
            if k == "__metadata__":
                new[k] = v
                continue
            if k == drop:
                continue
            b, e = v["data_offsets"]
            blob, shape = data[b:e], v["shape"]
            if k == shrink:
                shape = [shape[0] // 2]
                blob = blob[: len(blob) // 2]
            new[k] = {"dtype": v["dtype"], "shape": shape, "data_offsets": [offset, offset + len(blob)]}
            blobs.append(blob)
            offset += len(blob)
        text = json.dumps(new).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

    write("missing", drop="model.layers.1.self_attn.kv_b_proj.weight")
    write("wrong_shape", shrink="model.norm.weight")


if __name__ == "__main__":
    main()
