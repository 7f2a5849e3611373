#!/usr/bin/env python3
"""Writes a tiny Hugging Face byte-level BPE tokenizer (GPT-2 style) for tests: OUT_DIR/tokenizer.json and
OUT_DIR/tokenizer_config.json. Ids 0..255 are the 256 byte symbols (id = byte value), then one id per
merge, then <|endoftext|> (BOS and EOS, special). With the default merges the vocabulary is 265 ids and
"the the" encodes to 3 tokens (t, he, Ġthe). --variant=2 drops the last merge: another tokenizer (another
fingerprint) with 264 ids.
    make_tiny_tokenizer.py OUT_DIR [--variant=1|2]"""
import json
import os
import sys

MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("Ġ", "s")]


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def main():
    out = sys.argv[1]
    variant = 1
    for arg in sys.argv[2:]:
        if arg.startswith("--variant="):
            variant = int(arg.split("=", 1)[1])
    merges = MERGES if variant == 1 else MERGES[:-1]
    byte_chars = bytes_to_unicode()
    vocab = {byte_chars[b]: b for b in range(256)}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    eot = len(vocab)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": [f"{a} {b}" for a, b in merges]},
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False, indent=1)
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": False}, f, indent=1)


if __name__ == "__main__":
    main()
