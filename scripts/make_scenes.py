#!/usr/bin/env python3
"""Deterministic synthetic captioned scenes for training a small GroupViT from scratch (issue #8).

    make_scenes.py OUT [--train N] [--val 500] [--size S] [--seed 0] [--phrases words|objects|both]

Every scene: a textured, nearly grey background (noise, stripes, gradient or checkerboard with a
faint tint, so it cannot be confused with an object colour) and 1-3 non-overlapping objects, each
one of 6 saturated colours x 4 shapes, drawn with hard edges (no anti-aliasing, so no ignore
pixels are needed; 255 is never written).

Layout (the C++ trainer depends on it):
  OUT/{train,val}/captions.jsonl   {"image": "images/000000.png", "caption": "a red circle and a blue square",
                                    "phrases": [...], "objects": [["red", "circle"], ["blue", "square"]]}
  OUT/{train,val}/images/NNNNNN.png                RGB, S x S
  OUT/val/labels_colour/NNNNNN.png, labels_shape/  8-bit labels: 0 background, k = line k of the class file
  OUT/val/classes_colour.txt, classes_shape.txt    line 0 "background", then the class names

Phrases (the texts of the multi-label contrastive loss, used as-is; the trainer adds templates):
  words   (default) the colour and the shape of every object as separate words, in object order:
          ["red", "circle", "blue", "square"]; duplicates kept
  objects one phrase per object: ["red circle", "blue square"]
  both    objects followed by words
The data is a pure function of (seed, split, index, size): train and val use separate streams.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from PIL import Image

COLOURS = {  # name -> RGB centre; each object is jittered by up to +-JITTER per channel
    "red": (215, 35, 35),
    "green": (35, 175, 45),
    "blue": (40, 70, 225),
    "yellow": (235, 215, 30),
    "purple": (160, 45, 200),
    "cyan": (30, 200, 215),
}
COLOUR_JITTER = 20
SHAPES = ["circle", "square", "triangle", "cross"]
# Object side (fraction of the image side) by number of objects in the scene.
SIZE_RANGE = {1: (0.50, 0.75), 2: (0.42, 0.56), 3: (0.36, 0.46)}
GAP = 1  # pixels kept free around every object


def shape_mask(shape, s, yy, xx):
    """Boolean [s, s] mask of a shape filling an s x s box; yy, xx: pixel-centre coordinates in [0, s)."""
    c = s / 2.0
    if shape == "circle":
        return (yy - c) ** 2 + (xx - c) ** 2 <= (s / 2.0) ** 2
    if shape == "square":
        m = max(1, round(s * 0.08))
        return (yy >= m) & (yy < s - m) & (xx >= m) & (xx < s - m)
    if shape == "triangle":  # apex at the top centre, base at the bottom
        return (yy <= s) & (np.abs(xx - c) <= (yy / s) * (s / 2.0))
    if shape == "cross":
        w = s / 3.0
        return ((np.abs(xx - c) <= w / 2) | (np.abs(yy - c) <= w / 2))
    raise ValueError(shape)


def background(rng, size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = rng.integers(4)
    g1 = rng.uniform(60, 200)
    g2 = np.clip(g1 + rng.choice([-1, 1]) * rng.uniform(25, 60), 40, 215)
    if kind == 0:  # noise
        img = np.full((size, size), g1, np.float32) + rng.normal(0, 14, (size, size))
    elif kind == 1:  # stripes
        a = rng.uniform(0, np.pi)
        period = rng.uniform(4, 10)
        t = (np.cos(a) * xx + np.sin(a) * yy) / period
        img = np.where(np.floor(t) % 2 == 0, g1, g2)
    elif kind == 2:  # gradient
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * (xx - size / 2) + np.sin(a) * (yy - size / 2)) / size + 0.5
        img = g1 + (g2 - g1) * np.clip(t, 0, 1)
    else:  # checkerboard
        cell = rng.integers(3, 9)
        img = np.where(((yy // cell) + (xx // cell)) % 2 == 0, g1, g2)
    img = img[..., None] + rng.uniform(-10, 10, 3)[None, None, :] + rng.normal(0, 4, (size, size, 3))
    return img


def make_scene(seed, split, index, size):
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, index])
    img = background(rng, size)
    n = int(rng.integers(1, 4))
    colour_names = list(COLOURS)
    for _attempt in range(200):
        occupied = np.zeros((size, size), bool)
        objects, ok = [], True
        for _ in range(n):
            lo, hi = SIZE_RANGE[n]
            s = int(round(rng.uniform(lo, hi) * size))
            shape = SHAPES[rng.integers(len(SHAPES))]
            colour = colour_names[rng.integers(len(colour_names))]
            placed = False
            yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
            m = shape_mask(shape, s, yy, xx)
            grown = np.zeros((s + 2 * GAP, s + 2 * GAP), bool)  # m dilated by GAP (square structuring element)
            for dy in range(2 * GAP + 1):
                for dx in range(2 * GAP + 1):
                    grown[dy:dy + s, dx:dx + s] |= m
            padded = np.pad(occupied, GAP)
            for _try in range(30):
                y0 = int(rng.integers(0, size - s + 1))
                x0 = int(rng.integers(0, size - s + 1))
                if not (grown & padded[y0:y0 + s + 2 * GAP, x0:x0 + s + 2 * GAP]).any():
                    full = np.zeros((size, size), bool)
                    full[y0:y0 + s, x0:x0 + s] = m
                    occupied |= full
                    objects.append((colour, shape, full))
                    placed = True
                    break
            if not placed:
                ok = False
                break
        if ok:
            break
    else:
        raise RuntimeError(f"could not place {n} objects in scene {split}/{index}")
    # Reading order (top to bottom, left to right by the object's centre) for the caption.
    objects.sort(key=lambda o: tuple(np.argwhere(o[2]).mean(0).round(0)))
    colour_lab = np.zeros((size, size), np.uint8)
    shape_lab = np.zeros((size, size), np.uint8)
    for colour, shape, m in objects:
        rgb = np.array(COLOURS[colour], np.float32) + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, 3)
        img[m] = rgb[None, :] + rng.normal(0, 5, (int(m.sum()), 3))
        colour_lab[m] = colour_names.index(colour) + 1
        shape_lab[m] = SHAPES.index(shape) + 1
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return img, [(c, s) for c, s, _ in objects], colour_lab, shape_lab


def caption_of(objects):
    parts = [f"a {c} {s}" for c, s in objects]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def phrases_of(objects, mode):
    words = [w for c, s in objects for w in (c, s)]
    obj = [f"{c} {s}" for c, s in objects]
    return {"words": words, "objects": obj, "both": obj + words}[mode]


def write_split(out, split, count, size, seed, phrase_mode):
    d = os.path.join(out, split)
    os.makedirs(os.path.join(d, "images"), exist_ok=True)
    if split == "val":
        os.makedirs(os.path.join(d, "labels_colour"), exist_ok=True)
        os.makedirs(os.path.join(d, "labels_shape"), exist_ok=True)
        with open(os.path.join(d, "classes_colour.txt"), "w") as f:
            f.write("\n".join(["background"] + list(COLOURS)) + "\n")
        with open(os.path.join(d, "classes_shape.txt"), "w") as f:
            f.write("\n".join(["background"] + SHAPES) + "\n")
    counts = np.zeros(4, int)
    fg = 0.0
    with open(os.path.join(d, "captions.jsonl"), "w") as f:
        for i in range(count):
            img, objects, colour_lab, shape_lab = make_scene(seed, split, i, size)
            name = f"{i:06d}.png"
            Image.fromarray(img, "RGB").save(os.path.join(d, "images", name), compress_level=1)
            if split == "val":
                Image.fromarray(colour_lab, "L").save(os.path.join(d, "labels_colour", name))
                Image.fromarray(shape_lab, "L").save(os.path.join(d, "labels_shape", name))
            counts[len(objects)] += 1
            fg += (colour_lab > 0).mean()
            f.write(json.dumps({"image": f"images/{name}", "caption": caption_of(objects),
                                "phrases": phrases_of(objects, phrase_mode),
                                "objects": [list(o) for o in objects]}) + "\n")
    return counts, fg / max(count, 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--train", type=int, default=20000)
    p.add_argument("--val", type=int, default=500)
    p.add_argument("--size", type=int, default=36)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phrases", choices=["words", "objects", "both"], default="words")
    a = p.parse_args(argv)
    t0 = time.time()
    for split, count in (("train", a.train), ("val", a.val)):
        counts, fg = write_split(a.out, split, count, a.size, a.seed, a.phrases)
        print(f"{split}: {count} scenes {a.size}x{a.size}, objects per scene 1/2/3: "
              f"{counts[1]}/{counts[2]}/{counts[3]}, foreground {fg:.1%}")
    print(f"colours: {', '.join(COLOURS)}; shapes: {', '.join(SHAPES)}; phrases: {a.phrases}; "
          f"{time.time() - t0:.1f} s -> {a.out}")


if __name__ == "__main__":
    sys.exit(main())
