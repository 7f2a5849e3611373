#!/usr/bin/env python3
"""Writes a small, varied pseudo-English corpus for tests: DOCS documents of LINES sentences each,
random words from a fixed list. Seeded Python random (Mersenne Twister) gives the same text on every
machine.   make_text_corpus.py OUT_DIR [DOCS] [LINES] [SEED]"""
import random
import sys

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which "
         "but have an they you were her she there been one all we their has would when if so no what up "
         "out about into than them can only other new some could time these two may then do first any my "
         "now such like our over man me even most made after also did many before must through back years "
         "where much your way well down should because each just those people how too little state good "
         "very make world still own see men work long get here between both life being under never day same "
         "another know while last might us great old year off come since against go came right used take").split()


def main():
    out = sys.argv[1]
    docs = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    lines = int(sys.argv[3]) if len(sys.argv) > 3 else 120
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1234)
    for d in range(docs):
        with open(f"{out}/doc{d:03d}.txt", "w") as f:
            for _ in range(lines):
                sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18)))
                f.write(sentence.capitalize() + rng.choice([".", ".", ".", "?", "!", ";"]) + "\n")


if __name__ == "__main__":
    main()
