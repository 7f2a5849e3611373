// Shared by the scripts in this folder: loads Hugging Face's `tokenizers` Node package (the reference
// implementation) and tokenizer.json files, and parses --flag=value arguments.
//
// The package is taken from, in order: --node_modules=DIR, $TOKENIZERS_NODE_MODULES, the cache that
// tools/fetch_tokenizers.sh fills (data_cache/tokenizers/reference/node_modules in this repository),
// and finally Node's own resolution (NODE_PATH).
'use strict';
const fs = require('fs');
const path = require('path');

const repoRoot = path.resolve(__dirname, '..', '..');

// Parses ["--a=1", "--b", "x"] into {flags: {a: "1", b: true}, positional: ["x"]}.
function parseArgs(argv) {
  const flags = {};
  const positional = [];
  for (const arg of argv) {
    const m = /^--([^=]+)(?:=(.*))?$/s.exec(arg);
    if (m) flags[m[1]] = m[2] === undefined ? true : m[2];
    else positional.push(arg);
  }
  return {flags, positional};
}

// Returns {Tokenizer, version} of the reference package.
function loadReference(flags) {
  const candidates = [flags.node_modules, process.env.TOKENIZERS_NODE_MODULES,
                      path.join(repoRoot, 'data_cache', 'tokenizers', 'reference', 'node_modules')];
  for (const dir of candidates) {
    if (!dir || dir === true) continue;
    const pkg = path.resolve(dir, 'tokenizers');
    if (fs.existsSync(path.join(pkg, 'package.json'))) return loadPackage(pkg);
  }
  return loadPackage(path.dirname(require.resolve('tokenizers/package.json')));
}

function loadPackage(pkgDir) {
  const {version} = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  return {Tokenizer: require(pkgDir).Tokenizer, version: 'tokenizers@' + version};
}

// Accepts a tokenizer.json file or a folder holding one.
function tokenizerJsonPath(p) {
  return fs.statSync(p).isDirectory() ? path.join(p, 'tokenizer.json') : p;
}

function die(message) {
  process.stderr.write(path.basename(process.argv[1]) + ': error: ' + message + '\n');
  process.exit(1);
}

module.exports = {repoRoot, parseArgs, loadReference, tokenizerJsonPath, die};
