#!/usr/bin/env python3
"""Reference outputs for the C++ CLIP tokenizer (test/test_tokenizer.cpp).

usage: make_tokenizer_fixtures.py OUT_DIR

Writes, without network access and deterministically:
  OUT_DIR/hf/            a Hugging Face tokenizer folder (vocab.json + merges.txt rebuilt from open_clip's
                         bpe_simple_vocab_16e6.txt.gz as in the hub snapshots, plus the tokenizer.json and
                         tokenizer_config.json that transformers' save_pretrained writes)
  OUT_DIR/paths.json     {"bpe_gz": absolute path of open_clip's bpe_simple_vocab_16e6.txt.gz}
  OUT_DIR/corpus.jsonl   one {"text", "ids", "ids_trunc77", "decoded"} per line, from the FAST CLIPTokenizer
  OUT_DIR/batches.json   padded batches: texts, padding, max_length, input_ids, attention_mask
  OUT_DIR/unicode.json   the reference's view of every code point: pre-tokenizer class, lowercase, NFC
                         (alone and next to combining marks), so the C++ Unicode tables are checked exhaustively
  OUT_DIR/manifest.json  written last; its presence (with this FORMAT) means the folder is complete

Does nothing when OUT_DIR is already complete. Everything is built in a temporary sibling folder and
renamed into place, so an interrupted run never leaves a half-written OUT_DIR behind.
"""

import gzip
import json
import os
import random
import shutil
import sys
import time

FORMAT = 1
MAX_CODE_POINT = 0x10FFFF
SURROGATES = range(0xD800, 0xE000)
# The pre-tokenizer pattern of transformers' CLIPTokenizer without the special-token alternatives,
# used here only to classify single code points.
CLIP_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
# Contexts in which every code point c is normalised: (prefix, suffix). Marks of different combining
# classes around c reveal the reordering and composition rules, not just c's own mapping.
# "x" composes with none of these marks, so only cases that involve c are recorded.
NFC_PROBES = [
    ("", ""),
    ("x\u0345", ""),  # class 240 before c
    ("x", "\u0334"),  # class 1 after c
    ("x\u0301", ""),  # class 230
    ("x", "\u0301"),
    ("x\u0316", ""),  # class 220
    ("x", "\u0316"),
    ("e", "\u0301"),  # c between a starter and a mark that would compose with it
]


def all_code_points():
    return [cp for cp in range(MAX_CODE_POINT + 1) if cp not in SURROGATES]


# --- vocabulary -----------------------------------------------------------------------------------

def bytes_to_unicode():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def write_hf_folder(bpe_gz, hf_dir):
    """vocab.json + merges.txt exactly as OpenAI's tokenizer derives them from the .gz file."""
    from transformers import CLIPTokenizer

    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    table = bytes_to_unicode()
    byte_tokens = [table[b] for b in sorted(table, key=lambda b: (table[b] != chr(b), b))]
    vocab = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(hf_dir)
    with open(os.path.join(hf_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(hf_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[tuple(m.split()) for m in merges])
    tokenizer.save_pretrained(hf_dir)
    # The reference is what a user gets when loading the saved folder.
    return CLIPTokenizer.from_pretrained(hf_dir)


# --- corpus ---------------------------------------------------------------------------------------

CLASS_NAMES = """person bicycle car motorcycle airplane bus train truck boat traffic-light fire-hydrant stop-sign
parking-meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie suitcase
frisbee skis snowboard sports-ball kite baseball-bat baseball-glove skateboard surfboard tennis-racket bottle
wine-glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot hot-dog pizza donut cake chair
couch potted-plant bed dining-table toilet tv laptop mouse remote keyboard cell-phone microwave oven toaster sink
refrigerator book clock vase scissors teddy-bear hair-drier toothbrush aeroplane bottle sofa tvmonitor background
sky grass road building tree wall water mountain sand snow floor ceiling window door curtain rug-mat pillow
golden-retriever Great-Dane T-shirt jack-o'-lantern St.-Bernard Yorkshire-terrier goldfish
tiger-shark hammerhead cock hen ostrich brambling goldfinch house-finch junco indigo-bunting American-robin""".split()
TEMPLATES = ["a photo of a {}.", "a photo of the {}.", "a bad photo of a {}.", "a photo of many {}.",
             "a sculpture of a {}.", "a rendering of a {}.", "graffiti of a {}.", "a cropped photo of the {}.",
             "a tattoo of a {}.", "itap of a {}.", "a close-up photo of a {}.", "A PHOTO OF A {}!",
             "There is a {} in the scene.", "a {}", "{}", "a photo of a {}, a type of object.",
             "the {}'s photo", "  a   photo\tof a\n{}  "]
SCRIPT_SAMPLES = [
    "一只猫的照片", "猫の写真です。", "고양이 사진", "фотография кошки", "صورة قطة", "बिल्ली की तस्वीर",
    "תמונה של חתול", "รูปแมว", "φωτογραφία μιας γάτας", "ΟΔΟΣ ΟΔΌΣ", "კატის ფოტო", "կատվի լուսանկար",
    "ছবি বিড়াল", "பூனையின் புகைப்படம்", "ảnh một con mèo", "Straße STRASSE ß ẞ", "İstanbul ıstanbul",
    "Ǆ ǅ ǆ ǈ", "ﬁ ﬂ ﬃ", "ＡＢＣ ａｂｃ １２３", "ｶﾀｶﾅ", "한국어 ㄱㄴㄷ 각", "\u1100\u1161\u11a8 \uac01",
    "𝒜𝓁𝓅𝒽𝒶 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𠀀𠀁 𪜀 𫝀", "ꙮ", "Ⰰⰰ", "𐐀𐐨 Deseret", "Ꭰꭰ Cherokee", "ᏸ ᏸ",
]
EMOJI = ["🐱", "🐶🐱🐭", "👍🏽", "👨‍👩‍👧‍👦", "👩🏿‍💻", "🏳️‍🌈", "🇫🇷🇯🇵🇺🇸", "❤️", "1️⃣ #️⃣",
         "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "😀😃😄😁", "a photo of a 🐈", "🙂🙃", "🧑‍🤝‍🧑", "✌🏻✌🏼✌🏽✌🏾✌🏿", "☕️ vs ☕"]
CONTRACTIONS = ["it's", "IT'S", "don't", "DON'T", "we're", "WE'RE", "they've", "I'm", "I'M", "you'll",
                "YOU'LL", "he'd", "HE'D", "cat's toy", "CAT'S TOY", "it’s", "don’t", "'s", "'t", "'re",
                "'ve", "'m", "'ll", "'d", "''s", "'''", "'S'T'RE", "o'clock", "rock'n'roll", "ma'am",
                "y'all'd've", "'sup", "jack-o'-lantern", "'twas", "'Tis", "''", "'", "' s", "'x", "'1"]
ACCENTS = ["café", "cafe\u0301", "naïve", "nai\u0308ve", "Ångström", "A\u030angstro\u0308m", "\u212bngstr\u00f6m",
           "Tiếng Việt", "Tie\u0302\u0301ng Vie\u0323\u0302t", "Tie\u0323\u0302t", "résumé", "RÉSUMÉ",
           "e\u0301\u0301", "a\u0328\u0301", "a\u0301\u0328", "\u0301", "ﬀ", "Å", "\u0041\u030a", "ç c\u0327",
           "\u1e9b\u0323", "q\u0307\u0323", "\u0958", "\u2126 \u03a9", "\u00c5\u0301", "\u1100\u1161", "\u0344"]
SPECIALS = ["<|startoftext|>", "<|endoftext|>", "a<|startoftext|>b", "a <|endoftext|> b",
            "<|startoftext|><|endoftext|>", "<|endoftext|><|endoftext|>", "<|STARTOFTEXT|>", "<|EndOfText|>",
            "!<|StartOfText|>!", "a<|STARTOFTEXT|>!", "<|endoftext", "<|endoftext|", "endoftext|>",
            "<|<|endoftext|>|>", "<| endoftext |>", "<|startoftext|>a photo of a cat<|endoftext|>",
            "x<|endoftext|>y<|endoftext|>", "<|start_of_text|>", "<start_of_text>", "İ<|endoftext|>\u0301",
            "e<|endoftext|>\u0301", "<<|endoftext|>>", "<||endoftext|>", "<|endoftext|>" * 40]
WHITESPACE = ["", " ", "  ", "\t", "\n", "\r\n", " \t\n\r\u000b\u000c ", "\u00a0", "\u3000", "\u2028\u2029",
              "\u0085", "\u1680", "\u2000\u200a", "\u202f\u205f", "a\u200bb", "a\u180eb", "a\ufeffb",
              "a\u00a0b", "a\u3000b", "a \t b\n\nc", "  lead", "trail  ", "\x1c\x1d\x1e\x1f", "a\x1cb"]
CONTROLS = ["\x00", "a\x00b", "\x00\x00\x00", "\x7f", "\x1b[31mred\x1b[0m", "\x01\x02\x03", "a\u200db",
            "\u200e\u200f", "\ufffd", "\ufffe\uffff", "\U0010ffff", "\ue000\U000f0000", "\U000e0001\U000e0041"]
NUMBERS = ["3.14159", "1,000,000", "2023-01-01", "v1.2.3", "½ ¾ ² ³", "Ⅻ ⅻ", "٣ ४ ৫ ๖", "１２３", "42nd",
           "0x1F", "1e-10", "⑩ ⒈", "𝟙𝟚𝟛", "00000000000000000000", "1st 2nd 3rd 4th", "-7", "+7", "7%",
           "$19.99", "€5", "¥1000", "10:30pm", "555-1234", "𐄇 𒐀"]
# Characters where the reference's Unicode tables differ from utf8proc 2.8 (see groupvit/text/tokenizer_unicode.cpp).
UNICODE_SKEW = ["\U000105c0\U000105c1x", "a\U00016d40b", "\U00010d40\U00010d41", "x\u1c89y", "\ua7cb\ua7dc",
                "\U00010d50\U00010d65", "\U00016ea0\U00016eb8", "\ua7ce\ua7d2\ua7d4", "\U00011935\U00011930",
                "\U00011938", "\U00016d67\U00016d67", "\U0001611e\U0001611e", "a\u0345\u07fd", "a\u07fd\u0334",
                "a\u0301\u1abf", "e\u1ac0\u0301", "\U0002ebf0\U0002ee5d", "\U00013460x", "\U0001ccf0",
                "\u0898\u0301", "\u0301\u0898"]

WORDS = """the a of and to in is was on with for as by at from that this it an be are or which his her
their photo picture image cat dog red green blue small large old new man woman child street house car tree
running sitting standing near under above beside quickly slowly very beautiful ugly bright dark""".split()
SCRIPT_ALPHABETS = [
    (0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x00FF), (0x0100, 0x017F), (0x0370, 0x03FF), (0x0400, 0x04FF),
    (0x0530, 0x058F), (0x0590, 0x05FF), (0x0600, 0x06FF), (0x0900, 0x097F), (0x0E00, 0x0E7F), (0x10A0, 0x10FF),
    (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x1F300, 0x1F64F), (0x0300, 0x036F), (0x2000, 0x206F),
]
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»“”‘’–—…·•§¶©®™°±×÷"


def random_code_point(rng):
    while True:
        r = rng.random()
        if r < 0.5:
            cp = rng.randrange(0x10000)  # the BMP holds most assigned characters
        elif r < 0.75:
            cp = rng.randrange(0x10000, 0x40000)
        else:
            cp = rng.randrange(MAX_CODE_POINT + 1)
        if cp not in SURROGATES:
            return chr(cp)


def build_corpus():
    rng = random.Random(20240611)
    corpus = []
    for name in CLASS_NAMES:
        spaced = name.replace("-", " ")
        for template in rng.sample(TEMPLATES, 5):
            corpus.append(template.format(spaced))
        corpus.append(name)
        corpus.append(name.upper())
    corpus += SCRIPT_SAMPLES + EMOJI + CONTRACTIONS + ACCENTS + SPECIALS + WHITESPACE + CONTROLS + NUMBERS
    corpus += UNICODE_SKEW
    for text in SCRIPT_SAMPLES + ACCENTS:  # the same words written another way
        corpus += [text.upper(), text.lower(), text.title(), " ".join(text)]
    for _ in range(150):  # punctuation runs, alone and glued to words and contractions
        corpus.append("".join(rng.choice(PUNCTUATION + "  abcsdtmlrev'") for _ in range(rng.randint(1, 25))))
    for _ in range(100):
        word = rng.choice(WORDS)
        corpus.append(word + rng.choice(["'", "’", "''"]) + rng.choice(["s", "S", "t", "re", "ve", "m", "ll", "d", "LL"]))
    for _ in range(100):
        corpus.append(" ".join(str(rng.randint(0, 10 ** rng.randint(1, 12))) for _ in range(rng.randint(1, 5))))
    for _ in range(200):  # letters with random combining marks, precomposed and not
        text = ""
        for _ in range(rng.randint(1, 12)):
            text += rng.choice("aeiouAEIOUnNcCsSzZyY ")
            text += "".join(chr(rng.randrange(0x0300, 0x0370)) for _ in range(rng.randint(0, 3)))
        corpus.append(text)
    for _ in range(200):  # mixed scripts
        words = []
        for _ in range(rng.randint(1, 8)):
            lo, hi = rng.choice(SCRIPT_ALPHABETS)
            words.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 8))))
        corpus.append(rng.choice([" ", "", "-", "  ", "\t"]).join(words))
    for _ in range(100):  # whitespace of every kind between words
        spaces = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2003", "\u200b", "\u0085", " \t \n "]
        corpus.append("".join(rng.choice(WORDS) + rng.choice(spaces) for _ in range(rng.randint(1, 10))))
    for _ in range(60):  # longer than the 77-token context
        corpus.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 400))))
    corpus.append("".join(rng.choice(WORDS) for _ in range(300)))  # one very long "word"
    corpus.append("🐱" * 200)
    corpus.append("猫" * 500)
    for _ in range(400):  # random code point soup
        corpus.append("".join(random_code_point(rng) for _ in range(rng.randint(1, 40))))
    for _ in range(100):  # soup with spaces, specials and ASCII mixed in
        parts = [random_code_point(rng) for _ in range(rng.randint(1, 20))]
        parts += [rng.choice(["<|endoftext|>", " ", "'s", "A", "1", "!", "\u0301"]) for _ in range(5)]
        rng.shuffle(parts)
        corpus.append("".join(parts))
    return corpus


# --- the reference's Unicode view, one code point at a time --------------------------------------------

def ranges(code_points):
    out = []
    for cp in code_points:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def unicode_tables(code_points):
    from tokenizers import Regex, normalizers, pre_tokenizers

    # Class of c from how the pattern splits "x c !": "xc","!" letter; "x","c!" other;
    # "x","c","!" number; "x","!" whitespace. "\n" separates the cases and is itself whitespace.
    split = pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="removed", invert=True)
    pieces_by_case = {}
    chunk = 4096  # the binding's offset bookkeeping slows down on very long strings
    for first in range(0, len(code_points), chunk):
        text = "".join("x" + chr(cp) + "!\n" for cp in code_points[first:first + chunk])
        for piece, (start, _) in split.pre_tokenize_str(text):
            pieces_by_case.setdefault(first + start // 4, []).append(piece)
    classes = {"letter": [], "number": [], "space": []}
    for i, cp in enumerate(code_points):
        pieces, c = pieces_by_case[i], chr(cp)
        if pieces == ["x" + c, "!"]:
            classes["letter"].append(cp)
        elif pieces == ["x", c, "!"]:
            classes["number"].append(cp)
        elif pieces == ["x", "!"]:
            classes["space"].append(cp)
        elif pieces != ["x", c + "!"]:
            raise RuntimeError(f"unexpected split of U+{cp:04X}: {pieces}")

    def per_code_point(normalizer, prefix="", suffix=""):
        """{cp: result} where normalising prefix+c+suffix changes it ("\\n" is never touched)."""
        usable = [cp for cp in code_points if cp != 0x0A]
        texts = [prefix + chr(cp) + suffix for cp in usable]
        results = normalizer.normalize_str("\n".join(texts)).split("\n")
        assert len(results) == len(texts)
        return [[cp, [ord(ch) for ch in out]] for cp, text, out in zip(usable, texts, results) if out != text]

    nfc, nfd = normalizers.NFC(), normalizers.NFD()
    decomposed = per_code_point(nfd)
    recomposed = nfc.normalize_str("\n".join("".join(map(chr, d)) for _, d in decomposed)).split("\n")
    return {
        "letters": ranges(classes["letter"]),
        "numbers": ranges(classes["number"]),
        "spaces": ranges(classes["space"]),
        "lowercase": per_code_point(normalizers.Lowercase()),
        "nfc_probes": [{"prefix": p, "suffix": s, "changed": per_code_point(nfc, p, s)} for p, s in NFC_PROBES],
        # NFC of the canonical decomposition of c: catches compositions one side does not know.
        "nfc_of_nfd": [[cp, d, [ord(ch) for ch in r]] for (cp, d), r in zip(decomposed, recomposed)],
    }


# --- driver ---------------------------------------------------------------------------------------

def build(out_dir):
    # Located, not imported: importing open_clip pulls in torchvision, which is not installed.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from convert_hf import open_clip_vocabulary

    start = time.time()
    vocabulary = open_clip_vocabulary()
    if vocabulary is None:
        raise SystemExit("open-clip-torch is not installed: run scripts/setup.sh")
    bpe_gz = os.path.abspath(vocabulary)
    os.makedirs(out_dir)
    reference = write_hf_folder(bpe_gz, os.path.join(out_dir, "hf"))
    assert reference.is_fast, "the reference must be the fast (Rust) tokenizer"
    with open(os.path.join(out_dir, "paths.json"), "w") as f:
        json.dump({"bpe_gz": bpe_gz}, f)

    corpus = build_corpus()
    ids = reference(corpus)["input_ids"]
    ids_trunc = reference(corpus, truncation=True, max_length=77)["input_ids"]
    with open(os.path.join(out_dir, "corpus.jsonl"), "w") as f:
        for text, full, trunc in zip(corpus, ids, ids_trunc):
            decoded = reference.decode(full, skip_special_tokens=True)
            f.write(json.dumps({"text": text, "ids": full, "ids_trunc77": trunc, "decoded": decoded}) + "\n")

    batches = []
    batch_texts = [["a photo of a cat", "a photo of a dog"],
                   ["a photo of a cat", "hi", "", "an extremely detailed photo of a small grey cat on a sofa"],
                   corpus[-520:-512], [" ".join(["word"] * 100), "short", "日本語のテキスト 🐱"]]
    for texts in batch_texts:
        for padding, max_length in [("longest", 77), ("max_length", 77), ("longest", 8), ("max_length", 16)]:
            encoded = reference(texts, padding=True if padding == "longest" else "max_length",
                                truncation=True, max_length=max_length)
            batches.append({"texts": texts, "padding": padding, "max_length": max_length,
                            "input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})
    with open(os.path.join(out_dir, "batches.json"), "w") as f:
        json.dump(batches, f)

    with open(os.path.join(out_dir, "unicode.json"), "w") as f:
        json.dump(unicode_tables(all_code_points()), f)

    import tokenizers
    import transformers
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump({"format": FORMAT, "corpus_size": len(corpus), "transformers": transformers.__version__,
                   "tokenizers": tokenizers.__version__, "seconds": round(time.time() - start, 1)}, f)
    return len(corpus)


def is_complete(out_dir):
    try:
        with open(os.path.join(out_dir, "manifest.json")) as f:
            return json.load(f).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_tokenizer_fixtures.py OUT_DIR")
    out_dir = os.path.abspath(sys.argv[1])
    if is_complete(out_dir):
        print(f"tokenizer fixtures up to date in {out_dir}")
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    temp_dir = f"{out_dir}.tmp{os.getpid()}"
    shutil.rmtree(temp_dir, ignore_errors=True)
    try:
        count = build(temp_dir)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(temp_dir, out_dir)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    print(f"wrote {count} corpus strings and the Unicode tables to {out_dir}")


if __name__ == "__main__":
    main()
