#!/usr/bin/env node
// Writes the golden files the C++ BPE tokenizer (data/hf_tokenizer) is tested against: for every string
// in the cases file, what Hugging Face's tokenizers (the reference) gives.
//
//   node golden.js [--cases=FILE] [--out_dir=DIR] [--node_modules=DIR] [NAME=]TOKENIZER_DIR_OR_JSON...
//
// Defaults: tests/testdata/tokenizers/edge_cases.json and tests/testdata/tokenizers/; NAME defaults to
// the folder's name. Writes OUT_DIR/golden_NAME.json:
//   {"tokenizer": NAME, "reference": "tokenizers@X.Y.Z", "cases": [
//     {"text", "ids" (encode, add_special_tokens=false), "ids_special" (add_special_tokens=true),
//      "decoded" (decode(ids, skip_special_tokens=false)), "decoded_skip_special" (decode(ids, true))},
//     ...]}
// one case per line, so that a regeneration diffs readably. See regenerate_golden.sh.
'use strict';
const fs = require('fs');
const path = require('path');
const {repoRoot, parseArgs, loadReference, tokenizerJsonPath, die} = require('./common.js');

async function main() {
  const {flags, positional} = parseArgs(process.argv.slice(2));
  const casesFile = flags.cases || path.join(repoRoot, 'tests/testdata/tokenizers/edge_cases.json');
  const outDir = flags.out_dir || path.join(repoRoot, 'tests/testdata/tokenizers');
  if (positional.length === 0) die('no tokenizer given');
  const texts = JSON.parse(fs.readFileSync(casesFile, 'utf8'));
  if (!Array.isArray(texts) || !texts.every((t) => typeof t === 'string')) {
    die(casesFile + ' is not a JSON array of strings');
  }
  const {Tokenizer, version} = loadReference(flags);

  for (const spec of positional) {
    const eq = spec.indexOf('=');
    const dir = eq >= 0 ? spec.slice(eq + 1) : spec;
    const file = tokenizerJsonPath(dir);
    // The name: NAME= if given, else the folder holding tokenizer.json.
    const name = eq >= 0 ? spec.slice(0, eq) : path.basename(path.dirname(path.resolve(file)));
    const tok = Tokenizer.fromFile(file);
    const lines = [];
    for (const text of texts) {
      const ids = (await tok.encode(text, null, {addSpecialTokens: false})).getIds();
      const idsSpecial = (await tok.encode(text, null, {addSpecialTokens: true})).getIds();
      lines.push(JSON.stringify({
        text,
        ids,
        ids_special: idsSpecial,
        decoded: await tok.decode(ids, false),
        decoded_skip_special: await tok.decode(ids, true),
      }));
    }
    const out = path.join(outDir, 'golden_' + name + '.json');
    const header = '{"tokenizer": ' + JSON.stringify(name) + ', "reference": ' + JSON.stringify(version) +
                   ', "cases": [\n';
    fs.writeFileSync(out, header + lines.join(',\n') + '\n]}\n');
    const tokens = lines.reduce((n, l) => n + JSON.parse(l).ids.length, 0);
    console.log(`golden: ${path.relative(process.cwd(), out)}: ${texts.length} cases, ${tokens} tokens (${version})`);
  }
}

main().catch((e) => die(e.stack || String(e)));
