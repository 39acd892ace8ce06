#!/usr/bin/env python3
"""Reference segmentation scores for test/test_metrics.cpp: random label maps scored by numpy with
mmseg's rules (mmseg.core.evaluation.mean_iou: 255 ignored, IoU = intersection / union per class, NaN
where a class is in neither truth nor prediction and left out of the means, 0 where it is only
predicted; accuracy = correct / truth pixels, NaN for a class absent from the truth).

    make_metrics_fixtures.py OUT_DIR      writes OUT_DIR/metrics.json (skips the work when present)
"""
import json
import sys
from pathlib import Path

import numpy as np


def mmseg_scores(pairs, n):
    inter, union, area_truth = np.zeros(n), np.zeros(n), np.zeros(n)
    for truth, pred in pairs:
        keep = truth != 255
        t, p = truth[keep].astype(np.int64), pred[keep].astype(np.int64)
        i = np.bincount(t[t == p], minlength=n)
        at, ap = np.bincount(t, minlength=n), np.bincount(p, minlength=n)
        inter += i
        union += at + ap - i
        area_truth += at
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = inter / union, inter / area_truth
    fg = area_truth[1:].sum()
    return {"iou": [None if np.isnan(v) else v for v in iou], "accuracy": [None if np.isnan(v) else v for v in acc],
            "mean_iou": float(np.nanmean(iou)), "mean_accuracy": float(np.nanmean(acc)),
            "pixel_accuracy": float(inter.sum() / area_truth.sum()),
            "foreground_accuracy": float(inter[1:].sum() / fg)}


def case(rng, n, sizes):
    """Truth uses classes 0..n-3 (n-2 only predicted, n-1 in neither), a corner ignored; predictions right
    about half the time."""
    pairs = []
    for h, w in sizes:
        truth = rng.integers(0, n - 2, (h, w)).astype(np.uint8)
        truth[: max(h // 3, 1), : max(w // 4, 1)] = 255
        pred = np.where(rng.random((h, w)) < 0.5, np.where(truth == 255, 0, truth), rng.integers(0, n - 1, (h, w)))
        pairs.append((truth, pred.astype(np.uint8)))
    return {"classes": n, "images": [{"truth": t.ravel().tolist(), "prediction": p.ravel().tolist()}
                                     for t, p in pairs], "reference": mmseg_scores(pairs, n)}


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1]) / "metrics.json"
    if out.exists():
        print(f"{out}: present")
        return
    rng = np.random.default_rng(17)
    cases = [case(rng, 5, [(20, 30), (17, 9), (1, 5)]), case(rng, 21, [(64, 48), (33, 71)]),
             case(rng, 81, [(100, 120)])]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"generator": "scripts/make_metrics_fixtures.py", "numpy": np.__version__,
                               "cases": cases}))
    tmp.rename(out)
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
