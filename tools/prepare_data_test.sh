#!/bin/bash
# End-to-end check of tools/prepare_data: plain-text, Brown-format and JSON Lines inputs become train/val
# shards of the expected sizes; the split is deterministic (per JSONL line) and the output identical for
# any thread count; every kind of bad input is counted and its first case reported as FILE:LINE, and
# --strict fails on it; --bos/--eod_token; bad arguments are refused with a one-line error.
# With a second argument (the GPT-2 tokenizer.json, its tokenizer_config.json beside it) only the Hugging
# Face BPE checks run (//tools:prepare_data_hf_test).
set -euo pipefail

bin="$1"
hf_tokenizer="${2:-}"
tmp="${TEST_TMPDIR:-$(mktemp -d)}/prepare_data_test"
rm -rf "$tmp" && mkdir -p "$tmp/in/sub" "$tmp/brown"

fail() { echo "FAIL: $*" >&2; exit 1; }
tokens() { echo $(( $(stat -c %s "$1/train.tokens") / 4 + $(stat -c %s "$1/val.tokens") / 4 )); }
docs() { echo $(( $(grep -c document_start "$1/train.index") + $(grep -c document_start "$1/val.index") )); }
ids() { cat "$1/train.tokens" "$1/val.tokens" | od -An -tu4 -w4 | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'; }

# ---- Hugging Face GPT-2 BPE: ids as Hugging Face's tokenizers 0.23.2 encodes (no special tokens), EOD
# 50256 = <|endoftext|> (the config's eos_token); no BOS unless asked (the config has no add_bos_token).
if [[ -n "$hf_tokenizer" ]]; then
  gpt2="$(dirname "$hf_tokenizer")"
  [[ -f "$gpt2/tokenizer.json" && -f "$gpt2/tokenizer_config.json" ]] || fail "no GPT-2 tokenizer in $gpt2"
  printf '{"text": "Hello world"}\n{"text": " tokenizers, caf\\u00e9 \\ud83d\\ude00!"}\n{"text": "bad \xff byte"}\n' \
    > "$tmp/hf.jsonl"
  # Reference (node, tokenizers 0.23.2): "Hello world" -> 15496 995; " tokenizers, café 😀!" -> 11241 11341 11
  # 40304 30325 222 0; "bad \ufffd byte" -> 14774 20543 18022.
  out="$("$bin" --format=jsonl --tokenizer="$gpt2" --input="$tmp/hf.jsonl" --output="$tmp/hf" --val_fraction=0 2>&1)"
  echo "$out"
  [[ "$(ids "$tmp/hf")" == "15496 995 50256 11241 11341 11 40304 30325 222 0 50256 14774 20543 18022 50256" ]] ||
    fail "GPT-2 ids: $(ids "$tmp/hf")"
  [[ "$out" == *"end of document 50256, BOS none"* && "$out" == *"invalid UTF-8 1"* ]] || fail "GPT-2 summary: $out"
  grep -q 'vocab_size: 50257' "$tmp/hf/train.index" || fail "GPT-2 vocab_size"
  grep -q 'tokenizer_fingerprint: "fnv1a64:[0-9a-f]\{16\}"' "$tmp/hf/train.index" || fail "GPT-2 fingerprint"
  # GPT-2's BOS is its EOD (<|endoftext|>), which a shard holds only at document ends: --bos is refused.
  if err="$("$bin" --format=jsonl --tokenizer="$gpt2" --bos --input="$tmp/hf.jsonl" --output="$tmp/x" 2>&1)"; then
    fail "--bos accepted with BOS = EOD"
  fi
  [[ "$err" == *"--bos: the BOS token is the end-of-document token (id 50256)"* ]] || fail "--bos error: $err"
  # A literal <|endoftext|> in the text is the special token (reference: "Hello<|endoftext|> world" ->
  # 15496 50256 995): the document is split there, and a text of nothing else is an empty document.
  printf '{"text": "Hello<|endoftext|> world"}\n{"text": "<|endoftext|>"}\n' > "$tmp/hf_eod.jsonl"
  out="$("$bin" --format=jsonl --tokenizer="$gpt2" --input="$tmp/hf_eod.jsonl" --output="$tmp/hf_eod" --val_fraction=0 2>&1)"
  [[ "$(ids "$tmp/hf_eod")" == "15496 50256 995 50256" ]] || fail "GPT-2 split at <|endoftext|>: $(ids "$tmp/hf_eod")"
  [[ "$out" == *"hf_eod.jsonl:1: end-of-document token in text"*"split there"* ]] || fail "EOD-in-text report: $out"
  [[ "$out" == *"empty document 1"*"end-of-document token in text 2"* ]] || fail "EOD-in-text counts: $out"
  # tokenizer.json without tokenizer_config.json: no eos token, so --eod_token is required.
  mkdir -p "$tmp/bare" && cp "$gpt2/tokenizer.json" "$tmp/bare/"
  if err="$("$bin" --format=jsonl --tokenizer="$tmp/bare" --input="$tmp/hf.jsonl" --output="$tmp/x" 2>&1)"; then
    fail "a tokenizer without an eos token was accepted"
  fi
  [[ "$err" == *"has no eos token"*"--eod_token"* ]] || fail "no-eos error: $err"
  "$bin" --format=jsonl --tokenizer="$tmp/bare/tokenizer.json" --eod_token='<|endoftext|>' --input="$tmp/hf.jsonl" \
    --output="$tmp/hf_bare" --val_fraction=0 >/dev/null 2>&1 || fail "--eod_token='<|endoftext|>' refused"
  cmp "$tmp/hf/train.tokens" "$tmp/hf_bare/train.tokens" || fail "--eod_token='<|endoftext|>' differs from the config's eos"
  # Threads: byte-identical shards with the BPE tokenizer too.
  for i in $(seq 1 400); do printf '{"text": "Document %d: the quick brown fox %s jumps."}\n' "$i" "$(printf 'ab%.0s' $(seq 1 $((i % 23))))"; done > "$tmp/hf_many.jsonl"
  "$bin" --format=jsonl --tokenizer="$gpt2" --input="$tmp/hf_many.jsonl" --output="$tmp/hf1" --threads=1 --chunk_bytes=512 >/dev/null
  "$bin" --format=jsonl --tokenizer="$gpt2" --input="$tmp/hf_many.jsonl" --output="$tmp/hf3" --threads=3 --chunk_bytes=512 >/dev/null
  for f in train.tokens train.index val.tokens val.index; do cmp "$tmp/hf1/$f" "$tmp/hf3/$f" || fail "GPT-2 $f differs between 1 and 3 threads"; done
  echo PASS
  exit 0
fi

# Ten documents of 5 bytes each, one empty file, one hidden file; the split must keep val non-empty.
for i in 0 1 2 3 4; do printf 'doc%02d' "$i" > "$tmp/in/d$i.txt"; done
for i in 5 6 7 8 9; do printf 'doc%02d' "$i" > "$tmp/in/sub/d$i.txt"; done
: > "$tmp/in/empty.txt"
printf 'hidden' > "$tmp/in/.hidden"

out="$("$bin" --input="$tmp/in" --output="$tmp/out" --val_fraction=0.05 --seed=3)"
echo "$out"
[[ "$out" == *"10 documents"* ]] || fail "summary: $out"
[[ "$out" == *"1 empty skipped"* ]] || fail "empty file not skipped: $out"
train_bytes=$(stat -c %s "$tmp/out/train.tokens")
val_bytes=$(stat -c %s "$tmp/out/val.tokens")
# 10 documents x (5 bytes + EOD) x 4 bytes per token.
[[ $((train_bytes + val_bytes)) == 240 ]] || fail "token bytes $train_bytes + $val_bytes"
[[ $val_bytes -gt 0 ]] || fail "validation split is empty"
grep -q 'magic: "moe.data.TokenShard"' "$tmp/out/train.index" || fail "index magic"

# Same inputs, same seed: identical shards. Running again over an input that contains the output
# directory must not read the shards back as documents.
"$bin" --input="$tmp/in" --output="$tmp/in/out2" --val_fraction=0.05 --seed=3 >/dev/null
cmp "$tmp/out/train.tokens" "$tmp/in/out2/train.tokens" || fail "not deterministic"
out3="$("$bin" --input="$tmp/in" --output="$tmp/in/out2" --val_fraction=0.05 --seed=3)"
[[ "$out3" == *"10 documents"* ]] || fail "output directory read as input: $out3"

# Brown format: tags stripped, only sample files taken.
cat > "$tmp/brown/ca01" <<'TAGGED'


	The/at jury/nn said/vbd ``/`` no/at ''/'' ./.
TAGGED
cat > "$tmp/brown/cb02" <<'TAGGED'


	It/pps rained/vbd ./.
TAGGED
printf 'not a sample\n' > "$tmp/brown/README"
"$bin" --input="$tmp/brown" --output="$tmp/brown_out" --format=brown --val_fraction=0.5 >/dev/null
total=$(( $(stat -c %s "$tmp/brown_out/train.tokens") + $(stat -c %s "$tmp/brown_out/val.tokens") ))
# 'The jury said "no".\n' (20 bytes) + 'It rained.\n' (11 bytes) + 2 EOD = 33 tokens.
[[ $total == 132 ]] || fail "brown token bytes $total"

# Bad input: a clear one-line error and a non-zero exit.
if err="$("$bin" --input="$tmp/nope" --output="$tmp/x" 2>&1)"; then fail "missing input accepted"; fi
[[ "$err" == *"$tmp/nope"* ]] || fail "error does not name the input: $err"
if "$bin" --input="$tmp/in" --output="$tmp/x" --val_fraction=1.5 2>/dev/null; then fail "val_fraction 1.5 accepted"; fi
if err="$("$bin" --input="$tmp/in" --output="$tmp/x" --format=csv 2>&1)"; then fail "--format=csv accepted"; fi
[[ "$err" == *"--format must be text, brown or jsonl"* ]] || fail "format error: $err"

# ---- JSON Lines: one document per line; in directories only *.jsonl files are read.
mkdir -p "$tmp/j/sub"
for i in $(seq 1 30); do printf '{"id": %d, "text": "line %02d"}\n' "$i" "$i"; done > "$tmp/j/a.jsonl"
for i in $(seq 1 10); do printf '{"text": "sub %02d", "meta": {"x": [1, 2]}}\n' "$i"; done > "$tmp/j/sub/b.jsonl"
printf 'not json\n' > "$tmp/j/README.txt"
out="$("$bin" --format=jsonl --input="$tmp/j" --output="$tmp/j_out" --val_fraction=0.2 --seed=5)"
echo "$out"
[[ "$out" == *"40 documents (jsonl"* ]] || fail "jsonl summary: $out"
# 30 x (7 bytes + EOD) + 10 x (6 bytes + EOD)
[[ $(tokens "$tmp/j_out") == 310 ]] || fail "jsonl tokens $(tokens "$tmp/j_out")"
[[ $(stat -c %s "$tmp/j_out/val.tokens") -gt 0 ]] || fail "jsonl validation split is empty"
grep -q 'tokenizer_fingerprint: "byte"' "$tmp/j_out/train.index" || fail "index lacks the tokenizer fingerprint"
[[ "$out" == *"malformed JSON 0, missing key 0"* ]] || fail "clean input has issues: $out"
[[ "$out" == *" MB/s, "*"tokens/s ("* ]] || fail "no throughput line: $out"
# Determinism: the same run again gives the same shards; another seed another split.
"$bin" --format=jsonl --input="$tmp/j" --output="$tmp/j_out2" --val_fraction=0.2 --seed=5 >/dev/null
for f in train.tokens train.index val.tokens val.index; do cmp "$tmp/j_out/$f" "$tmp/j_out2/$f" || fail "jsonl $f not deterministic"; done
"$bin" --format=jsonl --input="$tmp/j" --output="$tmp/j_seed" --val_fraction=0.2 --seed=6 >/dev/null
! cmp -s "$tmp/j_out/val.tokens" "$tmp/j_seed/val.tokens" || fail "the seed does not change the split"
# The split is keyed on file:line: lines appended to a file leave the earlier lines' sides unchanged,
# so the old validation shard is a prefix of the new one.
mkdir -p "$tmp/j_more" && cp "$tmp/j/a.jsonl" "$tmp/j_more/a.jsonl"
for i in $(seq 31 60); do printf '{"text": "line %02d"}\n' "$i"; done >> "$tmp/j_more/a.jsonl"
"$bin" --format=jsonl --input="$tmp/j/a.jsonl" --output="$tmp/j_a" --val_fraction=0.2 --seed=5 >/dev/null
"$bin" --format=jsonl --input="$tmp/j_more/a.jsonl" --output="$tmp/j_more_out" --val_fraction=0.2 --seed=5 >/dev/null
n=$(stat -c %s "$tmp/j_a/val.tokens")
[[ $n -gt 0 && $n -lt $(stat -c %s "$tmp/j_more_out/val.tokens") ]] || fail "unexpected validation sizes"
cmp -n "$n" "$tmp/j_a/val.tokens" "$tmp/j_more_out/val.tokens" || fail "appending lines moved earlier documents"

# Neither side is left empty: the document with the extreme hash moves (both shards rewritten).
printf '{"text": "aa"}\n{"text": "bbb"}\n{"text": "c"}\n' > "$tmp/three.jsonl"
out="$("$bin" --format=jsonl --input="$tmp/three.jsonl" --output="$tmp/three_hi" --val_fraction=0.999999)"
[[ "$out" == *"train 1 documents"*"val 2 documents"* ]] || fail "training split left empty: $out"
out="$("$bin" --format=jsonl --input="$tmp/three.jsonl" --output="$tmp/three_lo" --val_fraction=0.000001)"
[[ "$out" == *"train 2 documents"*"val 1 documents"* ]] || fail "validation split left empty: $out"

# ---- Thread count and chunk size do not change the output (many small chunks, some bad lines).
for i in $(seq 1 3000); do
  case $((i % 500)) in
    7) echo '{"text": broken' ;;
    8) echo '' ;;
    *) printf '{"text": "document %d %s"}\n' "$i" "$(printf 'x%.0s' $(seq 1 $((i % 37))))" ;;
  esac
done > "$tmp/many.jsonl"
one="$("$bin" --format=jsonl --input="$tmp/many.jsonl" --output="$tmp/t1" --threads=1 --chunk_bytes=700 2>/dev/null)"
three="$("$bin" --format=jsonl --input="$tmp/many.jsonl" --output="$tmp/t3" --threads=3 --chunk_bytes=700 2>/dev/null)"
"$bin" --format=jsonl --input="$tmp/many.jsonl" --output="$tmp/t3b" --threads=3 >/dev/null 2>&1
for f in train.tokens train.index val.tokens val.index; do
  cmp "$tmp/t1/$f" "$tmp/t3/$f" || fail "$f differs between 1 and 3 threads"
  cmp "$tmp/t1/$f" "$tmp/t3b/$f" || fail "$f depends on --chunk_bytes"
done
[[ "$(echo "$one" | grep 'bad input')" == "$(echo "$three" | grep 'bad input')" ]] || fail "counts differ: $one / $three"
[[ "$one" == *"malformed JSON 6,"*"blank line 6,"* ]] || fail "many.jsonl counts: $one"
[[ $(docs "$tmp/t1") == 2988 ]] || fail "many.jsonl documents $(docs "$tmp/t1")"

# ---- Every kind of bad input: counted, the first of each reported as FILE:LINE, the policy applied.
{
  printf '\xef\xbb\xbf{"text": "ok one"}\n'    # 1: BOM (stripped), kept
  printf '\n'                                   # 2: blank line
  printf '{"text": "broken\n'                    # 3: malformed
  printf '{"title": "no text"}\n'                # 4: missing key
  printf '{"text": 5}\n'                         # 5: non-string
  printf '{"text": ""}\n'                        # 6: empty
  printf '{"text": "bad \xff byte"}\n'           # 7: invalid UTF-8 (repaired), kept
  printf '{"text": "%s"}\n' "$(printf 'y%.0s' $(seq 1 30))"  # 8: 30 bytes > 20: too large
  printf '[1, 2]\n'                              # 9: not an object: malformed
  printf '{"text": "x\\ud800"}\n'               # 10: lone surrogate escape: repaired, kept
  printf '{"text": "ok two"}'                    # 11: kept (no final newline)
} > "$tmp/bad.jsonl"
out="$("$bin" --format=jsonl --input="$tmp/bad.jsonl" --output="$tmp/bad_out" --max_document_bytes=20 \
  --val_fraction=0.3 2>"$tmp/bad.err")"
err="$(cat "$tmp/bad.err")"
echo "$out"; echo "$err"
[[ "$out" == *"skipped: malformed JSON 2, missing key 1, non-string value 1, blank line 1, empty document 1, document too large 1; repaired and kept: invalid UTF-8 2, byte order mark 1"* ]] ||
  fail "bad input counts: $out"
for want in "bad.jsonl:1: byte order mark" "bad.jsonl:2: blank line" "bad.jsonl:3: malformed JSON" \
            "bad.jsonl:4: missing key" "bad.jsonl:5: non-string value" "bad.jsonl:6: empty document" \
            "bad.jsonl:7: invalid UTF-8" "bad.jsonl:8: document too large"; do
  [[ "$err" == *"$want"* ]] || fail "no report '$want' in: $err"
done
[[ $(echo "$err" | grep -c 'warning: ') == 8 ]] || fail "expected one report per kind: $err"
# Kept: "ok one" (6), "bad \ufffd byte" (12), "x\ufffd" (4), "ok two" (6), each + EOD.
[[ $(tokens "$tmp/bad_out") == 32 ]] || fail "bad.jsonl tokens $(tokens "$tmp/bad_out")"
cat "$tmp/bad_out/train.tokens" "$tmp/bad_out/val.tokens" > "$tmp/bad_all.tokens"
od -An -tu4 -w4 "$tmp/bad_all.tokens" | tr -d ' ' | tr '\n' ',' | grep -q '98,97,100,32,239,191,189,32' ||
  fail "invalid byte not replaced by U+FFFD"
# --strict: the first bad input of any kind is an error naming FILE:LINE; no shards are written.
strict_case() {  # name, line 2 of the file (after a good line), expected report
  printf '{"text": "good"}\n%s\n' "$2" > "$tmp/strict_$1.jsonl"
  if err="$("$bin" --format=jsonl --strict --max_document_bytes=20 --input="$tmp/strict_$1.jsonl" \
      --output="$tmp/strict_out_$1" 2>&1)"; then
    fail "--strict accepted $1"
  fi
  [[ "$err" == *"strict_$1.jsonl:2: $3"*"(--strict)"* ]] || fail "--strict $1: $err"
  [[ ! -e "$tmp/strict_out_$1/train.tokens" ]] || fail "--strict $1 wrote a shard"
}
strict_case malformed '{"text": ' "malformed JSON"
strict_case notobject '"just a string"' "malformed JSON: the line is a string, not a JSON object"
strict_case missing '{"body": "x"}' 'missing key: the object has no "text" member'
strict_case nonstring '{"text": null}' 'non-string value: the value of "text" is null, not a string'
strict_case blank '   ' "blank line"
strict_case empty '{"text": ""}' "empty document"
strict_case huge '{"text": "abcdefghijklmnopqrstuvwxyz"}' "document too large"
strict_case utf8 "$(printf '{"text": "\xc0\xaf"}')" "invalid UTF-8: 2 invalid UTF-8 sequence(s)"
strict_case surrogate '{"text": "\udc00"}' "invalid UTF-8"
printf '\xef\xbb\xbf{"text": "good"}\n' > "$tmp/strict_bom.jsonl"
if err="$("$bin" --format=jsonl --strict --input="$tmp/strict_bom.jsonl" --output="$tmp/strict_out_bom" 2>&1)"; then
  fail "--strict accepted a BOM"
fi
[[ "$err" == *"strict_bom.jsonl:1: byte order mark"* ]] || fail "--strict BOM: $err"
"$bin" --format=jsonl --strict --input="$tmp/j" --output="$tmp/strict_clean" >/dev/null || fail "--strict refused clean input"
# An empty JSONL file is counted as an empty document.
: > "$tmp/j_empty.jsonl"
out="$("$bin" --format=jsonl --input="$tmp/j/a.jsonl,$tmp/j_empty.jsonl" --output="$tmp/j_empty_out" 2>&1)"
[[ "$out" == *"j_empty.jsonl: empty document"* && "$out" == *"empty document 1"* ]] || fail "empty jsonl file: $out"
# --jsonl_key picks another member.
printf '{"text": "a", "body": "hello"}\n{"body": "hi"}\n' > "$tmp/key.jsonl"
out="$("$bin" --format=jsonl --jsonl_key=body --input="$tmp/key.jsonl" --output="$tmp/key_out")"
[[ $(tokens "$tmp/key_out") == 9 ]] || fail "--jsonl_key tokens $(tokens "$tmp/key_out"): $out"

# ---- Text format: BOM stripped, invalid UTF-8 repaired (reported at its line), oversized file skipped.
mkdir -p "$tmp/t"
printf '\xef\xbb\xbfabc' > "$tmp/t/bom.txt"
printf 'line one\nline \xe2\x82 two\n' > "$tmp/t/utf8.txt"
printf '%s' "$(printf 'z%.0s' $(seq 1 50))" > "$tmp/t/zz_big.txt"
out="$("$bin" --input="$tmp/t" --output="$tmp/t_out" --max_document_bytes=40 --val_fraction=0.4 2>"$tmp/t.err")"
err="$(cat "$tmp/t.err")"
[[ "$err" == *"bom.txt:1: byte order mark"* ]] || fail "text BOM: $err"
[[ "$err" == *"utf8.txt:2: invalid UTF-8"* ]] || fail "text invalid UTF-8: $err"
[[ "$err" == *"zz_big.txt: document too large"* ]] || fail "text too large: $err"
[[ "$out" == *"2 documents (text"*"document too large 1"*"invalid UTF-8 1, byte order mark 1"* ]] || fail "text counts: $out"
# "abc" + EOD, "line one\nline \ufffd two\n" (22 bytes) + EOD
[[ $(tokens "$tmp/t_out") == 27 ]] || fail "text tokens $(tokens "$tmp/t_out")"
if err="$("$bin" --strict --input="$tmp/t/utf8.txt" --output="$tmp/t_strict" 2>&1)"; then fail "--strict accepted bad UTF-8"; fi
[[ "$err" == *"utf8.txt:2: invalid UTF-8"* ]] || fail "--strict text: $err"

# ---- --bos / --eod_token with the byte tokenizer (no BOS token; EOD 256 = "<|endoftext|>").
if err="$("$bin" --format=jsonl --input="$tmp/j" --output="$tmp/x" --bos 2>&1)"; then fail "--bos accepted without a BOS token"; fi
[[ "$err" == *"--bos: tokenizer byte has no BOS token"* ]] || fail "--bos error: $err"
"$bin" --format=jsonl --input="$tmp/j" --output="$tmp/nobos" --nobos --val_fraction=0.2 --seed=5 >/dev/null
cmp "$tmp/j_out/train.tokens" "$tmp/nobos/train.tokens" || fail "--nobos changed the output"
"$bin" --format=jsonl --input="$tmp/j" --output="$tmp/eod_named" --eod_token='<|endoftext|>' --val_fraction=0.2 --seed=5 >/dev/null
cmp "$tmp/j_out/train.tokens" "$tmp/eod_named/train.tokens" || fail "--eod_token='<|endoftext|>' is not the default"
out="$("$bin" --format=jsonl --input="$tmp/j" --output="$tmp/eod_x" --eod_token='|')"
grep -q 'end_of_document_id: 124' "$tmp/eod_x/train.index" || fail "--eod_token='|' not recorded: $out"
[[ "$out" == *"end of document 124, BOS none"* ]] || fail "--eod_token summary: $out"
# A text holding the EOD token ('|' here) is split there: a shard has the EOD only at document ends.
printf '{"text": "ab|cd"}\n' > "$tmp/pipe.jsonl"
out="$("$bin" --format=jsonl --input="$tmp/pipe.jsonl" --output="$tmp/pipe_out" --eod_token='|' --val_fraction=0 2>&1)"
[[ "$(ids "$tmp/pipe_out")" == "97 98 124 99 100 124" ]] || fail "split at the EOD token: $(ids "$tmp/pipe_out")"
[[ "$out" == *"pipe.jsonl:1: end-of-document token in text"* && "$out" == *"2 documents"* ]] || fail "EOD split: $out"
if err="$("$bin" --format=jsonl --input="$tmp/j" --output="$tmp/x" --eod_token=nope 2>&1)"; then fail "--eod_token=nope accepted"; fi
[[ "$err" == *"--eod_token: 'nope' is not a token of tokenizer byte"* ]] || fail "--eod_token error: $err"
help="$("$bin" --help 2>&1 || true)"
[[ "$help" == *"malformed JSON line"*"byte order mark"* ]] || fail "--help does not state the bad-input policies"
echo PASS
