#!/usr/bin/env python3
"""A reduced CLIP BPE tokenizer that encodes a closed corpus exactly like the full CLIP tokenizer.

    make_small_vocab.py OUT_DIR --text FILE... [--bpe-gz PATH]

FILE: plain text (one text a line), a captions.jsonl of scripts/make_scenes.py (its "caption" and
"phrases" are read), a class-name file or a template file ("{}" is dropped).

The full CLIP vocabulary (49408 tokens) would make the token embedding table 49408 x width, far too
big for a tiny model. This keeps
  * the 256 byte tokens and the 256 byte tokens with "</w>", in CLIP's order (ids 0..511),
  * only the CLIP merges that the BPE applies to the words of the corpus, in their original rank
    order (one token per merge, ids 512..),
  * "<|startoftext|>" and "<|endoftext|>" as the last two ids (end of text is the largest id, as in CLIP).
BPE picks the lowest-ranked merge among the pairs present; every merge the full tokenizer applies to
a corpus word is kept, and any other kept merge ranks below it, so each corpus word goes through
the same merges and gets the same tokens. This is checked with transformers' CLIPTokenizer and
CLIPTokenizerFast loaded from OUT_DIR, word by word and text by text (token strings).

Writes vocab.json, merges.txt and what CLIPTokenizer.save_pretrained writes (tokenizer_config.json,
special_tokens_map.json, tokenizer.json where the version writes it).
"""
import argparse
import gzip
import json
import os
import sys

import regex as re

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_fixtures import bytes_to_unicode  # noqa: E402

# CLIP's pre-tokenizer pattern (openai/CLIP simple_tokenizer.py).
PAT = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                 re.IGNORECASE)


def read_texts(paths):
    texts = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            if path.endswith(".jsonl"):
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        texts.append(row["caption"])
                        texts.extend(row.get("phrases", []))
            else:
                texts.extend(line.rstrip("\n").replace("{}", " ") for line in f if line.strip())
    return texts


def words_of(texts):
    out = set()
    for t in texts:
        t = " ".join(t.strip().lower().split())
        out.update(re.findall(PAT, t))
    out.discard("<|startoftext|>")
    out.discard("<|endoftext|>")
    return sorted(out)


def full_clip_merges(bpe_gz):
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    return [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]


def bpe_merges_used(word, ranks):
    """The merges CLIP's BPE applies to one pre-tokenized word (already byte-encoded)."""
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    used = []
    while len(symbols) > 1:
        pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        used.append(best)
        merged, i = [], 0
        while i < len(symbols):
            if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return used


def build(out_dir, texts, bpe_gz):
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    merges = full_clip_merges(bpe_gz)
    ranks = {m: i for i, m in enumerate(merges)}
    table = bytes_to_unicode()
    words = words_of(texts)
    keep = set()
    for w in words:
        encoded = "".join(table[b] for b in w.encode("utf-8"))
        keep.update(bpe_merges_used(encoded, ranks))
    kept = sorted(keep, key=ranks.__getitem__)
    byte_tokens = [table[b] for b in sorted(table, key=lambda b: (table[b] != chr(b), b))]
    vocab = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m) for m in kept]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(set(vocab)) == len(vocab), "duplicate tokens"
    os.makedirs(out_dir, exist_ok=True)
    ids = {t: i for i, t in enumerate(vocab)}
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(ids, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in kept))
    CLIPTokenizer(vocab=ids, merges=kept).save_pretrained(out_dir)
    special = os.path.join(out_dir, "special_tokens_map.json")
    if not os.path.exists(special):  # transformers 5 no longer writes it
        with open(special, "w") as f:
            json.dump({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                       "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, f, indent=2)

    # Check against the full CLIP tokenizer (same construction as make_tokenizer_fixtures.write_hf_folder).
    full_vocab = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m) for m in merges]
    full_vocab += ["<|startoftext|>", "<|endoftext|>"]
    full = CLIPTokenizer(vocab={t: i for i, t in enumerate(full_vocab)}, merges=merges)
    small = CLIPTokenizer.from_pretrained(out_dir)
    small_fast = CLIPTokenizerFast.from_pretrained(out_dir)
    bad = []
    for t in words + sorted(set(texts)):
        ref = full.tokenize(t)
        for tok in (small, small_fast):
            got = tok.tokenize(t)
            if got != ref:
                bad.append((t, type(tok).__name__, ref, got))
        if "<|endoftext|>" in ref or any(tok not in ids for tok in ref):  # unknown (CLIP's unk is end of text)
            bad.append((t, "unknown token", ref, None))
    enc = small_fast("a red circle")["input_ids"]
    assert enc[0] == len(vocab) - 2 and enc[-1] == len(vocab) - 1, enc
    if bad:
        for b in bad[:10]:
            print("MISMATCH", b, file=sys.stderr)
        raise SystemExit(f"{len(bad)} mismatches")
    return len(vocab), len(kept), len(words)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--text", nargs="+", required=True)
    p.add_argument("--bpe-gz", default=None, help="CLIP's bpe_simple_vocab_16e6.txt.gz (default: open_clip's)")
    a = p.parse_args(argv)
    bpe_gz = a.bpe_gz
    if bpe_gz is None:
        from convert_hf import open_clip_vocabulary
        bpe_gz = open_clip_vocabulary()
        if bpe_gz is None:
            raise SystemExit("open_clip is not installed: pass --bpe-gz")
    texts = read_texts(a.text)
    n_vocab, n_merges, n_words = build(a.out_dir, texts, str(bpe_gz))
    print(f"{a.out_dir}: vocab {n_vocab} tokens ({n_merges} merges) for {n_words} words of {len(texts)} texts; "
          f"CLIPTokenizer and CLIPTokenizerFast agree with full CLIP on every word and text")


if __name__ == "__main__":
    sys.exit(main())
