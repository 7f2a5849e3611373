#!/usr/bin/env python3
"""Copies a Hugging Face directory (config.json + one F32 model.safetensors) with its vocabulary padded to
VOCAB ids: embed_tokens and lm_head get zero rows for the new ids, config.json the new vocab_size. With
--zero_head every lm_head row is zero (every id equally likely: sampling reaches any id). With
--tokenizer=DIR, DIR's tokenizer.json and tokenizer_config.json are copied in.
    pad_hf_vocab.py SRC_DIR DST_DIR VOCAB [--zero_head] [--tokenizer=DIR]"""
import json
import os
import shutil
import struct
import sys


def main():
    src, dst, vocab = sys.argv[1], sys.argv[2], int(sys.argv[3])
    zero_head = "--zero_head" in sys.argv[4:]
    tokenizer = next((a.split("=", 1)[1] for a in sys.argv[4:] if a.startswith("--tokenizer=")), None)
    with open(os.path.join(src, "model.safetensors"), "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        b, e = info["data_offsets"]
        shape, raw = info["shape"], data[b:e]
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            rows, cols = shape
            assert vocab >= rows, (name, shape, vocab)
            if name == "lm_head.weight" and zero_head:
                raw = b""
                rows = 0
            raw += bytes(4 * cols * (vocab - rows))
            shape = [vocab, cols]
        tensors[name] = (shape, raw)
    out_header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        shape, raw = tensors[name]
        out_header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(out_header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    config = json.load(open(os.path.join(src, "config.json")))
    config["vocab_size"] = vocab
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if tokenizer:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(tokenizer, name), os.path.join(dst, name))


if __name__ == "__main__":
    main()
