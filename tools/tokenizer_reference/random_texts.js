#!/usr/bin/env node
// Writes seeded random texts for live comparisons with the reference tokenizer: fragments drawn from
// many scripts, Unicode spaces, digits of several systems, emoji sequences, combining marks, code,
// contractions in both cases, and the special-token strings of the tested tokenizers, glued at random.
//
//   node random_texts.js --out=DIR [--count=6] [--chars=6000] [--seed=1]   -> DIR/text<i>.txt
'use strict';
const fs = require('fs');
const path = require('path');
const {parseArgs, die} = require('./common.js');

const pools = [
  'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', '0123456789', '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~',
  ' \t\n\r\u00a0\u2000\u2003\u200a\u3000\u180e\u0085\u2028\u2029\u200b\u000b\u000c', '日本語中文字龥一丁',
  'ひらがなカタカナ゠ヿ', '한국어', 'éèêëÉçñß İıſK', '\u0301\u0308\u0327\u093f\u094d', 'العربيةעברית',
  'हिन्दीไทย', '٠١٢٣٤٥٦٧٨٩０１２３', 'ⅠⅡⅢ½¼²³', '∑∫≤≥→⇒', '🙂👍🏽👩‍👩‍👧‍👦🇺🇸❤️\u200d', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '\ufffd\ufeff'];
const words = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "DON'T", '<|endoftext|>',
  '<|begin_of_text|>', '<｜begin▁of▁sentence｜>', '<|im_start|>', '<｜User｜>', '<｜fim▁hole｜>', '    ',
  '\n\n\n', '\r\n', '  \n  ', '12345678901', 'http://x.com/a?b=1', 'def f(x):\n    return x+1\n'];

// mulberry32: a small seeded PRNG, so every run writes the same texts.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const {flags} = parseArgs(process.argv.slice(2));
if (typeof flags.out !== 'string') die('--out=DIR is required');
const random = prng(Number(flags.seed || 1));
const pick = (n) => Math.floor(random() * n);
function fragment() {
  if (random() < 0.15) return words[pick(words.length)];
  const chars = [...pools[pick(pools.length)]];
  let s = '';
  for (let i = 1 + pick(6); i > 0; --i) s += chars[pick(chars.length)];
  return s;
}
fs.mkdirSync(flags.out, {recursive: true});
for (let k = 0; k < Number(flags.count || 6); ++k) {
  let text = '';
  while (text.length < Number(flags.chars || 6000)) text += fragment();
  fs.writeFileSync(path.join(flags.out, `text${k}.txt`), text);
}
