#!/usr/bin/env node
// Throughput of Hugging Face's tokenizers (the reference) on a JSON Lines corpus, to compare with the C++
// tokenizer: one encodeBatch over every document's "text" (add_special_tokens=false) after one warm-up
// pass, best of --repeat passes.
//
//   node bench_hf.js --tokenizer=DIR_OR_JSON --input=FILE.jsonl [--repeat=3] [--key=text]
//   RAYON_NUM_THREADS=1 node bench_hf.js ...     # threads of the Rust batch encoder (default: all cores)
//   TOKENIZERS_PARALLELISM=false node bench_hf.js ...   # no batch parallelism at all
//
// Prints one JSON line: {"tokenizer", "docs", "bytes", "tokens", "threads" (requested), "cpu_busy" (CPU
// seconds per second in the best pass: the threads really used), "seconds", "mb_per_s"
// (10^6 UTF-8 bytes of text per second), "tokens_per_s", "reference"}.
'use strict';
const fs = require('fs');
const os = require('os');
const {parseArgs, loadReference, tokenizerJsonPath, die} = require('./common.js');

async function main() {
  const {flags} = parseArgs(process.argv.slice(2));
  if (typeof flags.tokenizer !== 'string') die('--tokenizer=DIR_OR_JSON is required');
  if (typeof flags.input !== 'string') die('--input=FILE.jsonl is required');
  const key = typeof flags.key === 'string' ? flags.key : 'text';
  const repeat = Number(flags.repeat || 3);
  const {Tokenizer, version} = loadReference(flags);
  const tok = Tokenizer.fromFile(tokenizerJsonPath(flags.tokenizer));

  const docs = [];
  for (const line of fs.readFileSync(flags.input, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const text = JSON.parse(line)[key];
    if (typeof text !== 'string') die(`a line of ${flags.input} has no string "${key}"`);
    docs.push(text);
  }
  const bytes = docs.reduce((n, d) => n + Buffer.byteLength(d, 'utf8'), 0);
  const options = {addSpecialTokens: false};

  let tokens = 0;
  for (const e of await tok.encodeBatch(docs, options)) tokens += e.getLength();  // warm-up
  let best = Infinity;
  let cpuBusy = 0;  // CPU seconds per wall second over the timed passes: the threads actually busy
  for (let i = 0; i < repeat; i++) {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    await tok.encodeBatch(docs, options);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    if (seconds < best) [best, cpuBusy] = [seconds, (c.user + c.system) / 1e6 / seconds];
  }
  const parallel = !/^(false|0|off|no)$/i.test(process.env.TOKENIZERS_PARALLELISM || '');
  const threads = parallel ? Number(process.env.RAYON_NUM_THREADS || 0) || os.availableParallelism() : 1;
  console.log(JSON.stringify({
    tokenizer: flags.tokenizer, docs: docs.length, bytes, tokens, threads, cpu_busy: cpuBusy, seconds: best,
    mb_per_s: bytes / 1e6 / best, tokens_per_s: tokens / best, reference: version,
  }));
}

main().catch((e) => die(e.stack || String(e)));
