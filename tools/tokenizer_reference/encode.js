#!/usr/bin/env node
// What Hugging Face's tokenizers (the reference) gives for one file, for live comparison tests.
//
//   node encode.js --tokenizer=DIR_OR_JSON --input=FILE [--add_special_tokens]
//       prints one line: the JSON array of ids of the file's whole text. The file is read as UTF-8 the
//       way Node does it: malformed bytes become U+FFFD (one per maximal ill-formed subsequence, as
//       in the WHATWG/Unicode "best practice"), a leading BOM is kept as U+FEFF.
//   node encode.js --tokenizer=DIR_OR_JSON --input=FILE --decode [--skip_special_tokens]
//       reads a JSON array of ids from FILE and prints the decoded text exactly (no newline added).
//
// --input=- reads standard input. --node_modules=DIR picks the reference package (see common.js).
'use strict';
const fs = require('fs');
const {parseArgs, loadReference, tokenizerJsonPath, die} = require('./common.js');

async function main() {
  const {flags} = parseArgs(process.argv.slice(2));
  if (typeof flags.tokenizer !== 'string') die('--tokenizer=DIR_OR_JSON is required');
  if (typeof flags.input !== 'string') die('--input=FILE is required');
  const {Tokenizer} = loadReference(flags);
  const tok = Tokenizer.fromFile(tokenizerJsonPath(flags.tokenizer));
  const text = fs.readFileSync(flags.input === '-' ? 0 : flags.input).toString('utf8');

  if (flags.decode) {
    const ids = JSON.parse(text);
    if (!Array.isArray(ids) || !ids.every(Number.isInteger)) die(flags.input + ' is not a JSON array of ids');
    process.stdout.write(await tok.decode(ids, Boolean(flags.skip_special_tokens)));
  } else {
    const enc = await tok.encode(text, null, {addSpecialTokens: Boolean(flags.add_special_tokens)});
    process.stdout.write(JSON.stringify(enc.getIds()) + '\n');
  }
}

main().catch((e) => die(e.stack || String(e)));
