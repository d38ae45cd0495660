#!/usr/bin/env python3
"""The public-domain text kvsim's tiny model trains on, and prompts with a repeated passage.

Text: the King James Version of the Bible (1611), as shipped by Debian's `bible-kjv-text` package
(/usr/lib/bible.data, read with the `bible` program of package `bible-kjv`:
`apt-get install -y bible-kjv`). The KJV text is in the public domain (its copyright expired;
see /usr/share/doc/bible-kjv-text/copyright — in the United Kingdom the Crown's letters patent
still restrict printing); the Debian packaging code is GPL-2+.

`kjv_text()` returns the whole text as plain ASCII prose: chapter headings ("Genesis 1") on their
own line, one verse per line without its number. `split_corpus` holds out the last 5% (from
Colossians 1:16 to the end of Revelation, 207,480 bytes) for prompts, so a recorded trace's text is
not text the model was trained on. The cleaned text is 4,150,828 bytes, sha256 f4603d67...b322.

Command line: prompt token ids with a repeated passage (the shape tests/data/recorded_tiny.h5 uses),
tokenized with a checkpoint's tokenizer:
    /usr/bin/python3 tools/record/corpus.py prompt --tokenizer CKPT --out prompt_ids.txt [--filler1 1200 ...]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

BIBLE_RANGE = "gen1:1-rev22:21"
HELDOUT_FRACTION = 0.05


def kjv_text(bible="bible"):
    """The KJV as ASCII text (about 4.3 MB), from the `bible` program."""
    exe = shutil.which(bible)
    if exe is None:
        raise RuntimeError("the `bible` program is not installed; run `apt-get install -y bible-kjv` "
                           "(it reads the KJV text of package bible-kjv-text), or pass --text FILE")
    raw = subprocess.run([exe, BIBLE_RANGE], check=True, capture_output=True, text=True).stdout
    lines = []
    verse = None
    for line in raw.splitlines():
        m = re.match(r"^\s+\d+ (.*)$", line)
        if m:  # a new verse: "  12 And God said, ..."
            if verse is not None:
                lines.append(verse)
            verse = m.group(1).strip()
        elif line.strip() == "":
            continue
        elif line[:1].isspace() or verse is None or re.match(r"^[1-3]? ?[A-Z][A-Za-z ]+ \d+$", line):
            if verse is not None:  # a chapter heading ends the verse before it
                lines.append(verse)
                verse = None
            lines.append(line.strip())
        else:  # a wrapped continuation of the verse
            verse += " " + line.strip()
    if verse is not None:
        lines.append(verse)
    text = "\n".join(lines) + "\n"
    return text.encode("ascii", errors="ignore").decode("ascii")


def split_corpus(text, heldout_fraction=HELDOUT_FRACTION):
    """(train, heldout): the held-out part is the end of the text, cut at a line break."""
    cut = int(len(text) * (1.0 - heldout_fraction))
    cut = text.index("\n", cut) + 1
    return text[:cut], text[cut:]


def load_text(path=None):
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read()
    return kjv_text()


def repeated_passage_prompt(ids, filler1, passage, filler2, repeat):
    """Token ids of a prompt  filler1 | P | filler2 | P[:repeat]  cut from held-out token ids:
    filler1 = ids[0:filler1], filler2 = ids[filler1:filler1+filler2] (so the text flows on from
    filler1 into filler2 around P), P = ids[filler1+filler2 : +passage] (text from further on).
    A model that copies continues P after the prompt. Returns (prompt ids, spans)."""
    if filler1 + filler2 + passage > len(ids):
        raise ValueError("held-out text has %d tokens, too few for this prompt" % len(ids))
    if not 0 < repeat <= passage:
        raise ValueError("repeat must be in [1, passage]")
    a = list(ids[:filler1])
    b = list(ids[filler1:filler1 + filler2])
    p = list(ids[filler1 + filler2:filler1 + filler2 + passage])
    prompt = a + p + b + p[:repeat]
    spans = {"passage_begin": len(a), "passage_end": len(a) + len(p), "repeat_begin": len(a) + len(p) + len(b),
             "repeat_tokens": repeat, "distance": len(p) + len(b)}
    return prompt, spans


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("prompt", help="write prompt token ids with a repeated passage from the held-out text")
    pr.add_argument("--tokenizer", required=True, help="checkpoint directory whose tokenizer.json to use")
    pr.add_argument("--out", required=True, help="token ids, comma separated (record_trace.py --prompt-ids)")
    pr.add_argument("--out-text", help="also write the prompt as text")
    pr.add_argument("--text", help="text file instead of the KJV")
    pr.add_argument("--filler1", type=int, default=1200, help="tokens before the passage")
    pr.add_argument("--passage", type=int, default=400, help="tokens of the passage P")
    pr.add_argument("--filler2", type=int, default=200, help="tokens between P and its repeat")
    pr.add_argument("--repeat", type=int, default=200, help="tokens of P repeated at the end of the prompt")
    tx = sub.add_parser("text", help="write the cleaned KJV text")
    tx.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        text = load_text(getattr(args, "text", None))
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        print("corpus.py: %s" % e, file=sys.stderr)
        return 2
    if args.cmd == "text":
        with open(args.out, "w") as f:
            f.write(text)
        return 0
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from llama_tiny import load_tokenizer
    tokenizer = load_tokenizer(args.tokenizer)
    _, heldout = split_corpus(text)
    try:
        prompt, spans = repeated_passage_prompt(tokenizer.encode(heldout), args.filler1, args.passage, args.filler2,
                                                args.repeat)
    except ValueError as e:
        print("corpus.py: %s" % e, file=sys.stderr)
        return 2
    with open(args.out, "w") as f:
        f.write(",".join(str(i) for i in prompt) + "\n")
    if args.out_text:
        with open(args.out_text, "w") as f:
            f.write(tokenizer.decode(prompt))
    print("corpus.py: wrote %s: %d tokens; passage at [%d, %d), its first %d tokens repeated from %d (distance %d)"
          % (args.out, len(prompt), spans["passage_begin"], spans["passage_end"], spans["repeat_tokens"],
             spans["repeat_begin"], spans["distance"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
