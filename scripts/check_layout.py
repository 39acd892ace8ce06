#!/usr/bin/env python3
"""Checks that the tree reads as the architecture says (README "Layout", groupvit/CMakeLists.txt).

  scripts/check_layout.py [--root DIR]          exit 0 when every rule holds, 1 with one line a fault

Rules:
  1. layering: a file in groupvit/<layer>/ includes groupvit headers of the layers it may use only;
     formats/ and text/ include no LibTorch or OpenCV header; only image/ includes OpenCV;
  2. public headers: GROUPVIT_PUBLIC_HEADERS (groupvit/CMakeLists.txt) names existing files; every
     other header under groupvit/ starts with "// Internal header"; a public header includes only
     public ones (what is installed must compile);
  3. apps/ and examples/ include only public headers: the CLI uses the library as a user would;
  4. the README's layout table names every source folder of the tree.
CTest runs it as layout.check; CMake itself refuses a LibTorch link below the core.
"""
import argparse
import re
import subprocess
import sys
from pathlib import Path

# Which groupvit folders each folder may include from (itself included). "" is groupvit/ itself:
# the facade groupvit.h and the generated version.h.
LAYERS = {
    "formats": {"formats"},
    "text": {"formats", "text"},
    "preprocess": {"formats", "text", "preprocess", ""},
    "runtime": {"runtime"},
    "model": {"formats", "text", "preprocess", "runtime", "model"},
    "segment": {"formats", "text", "preprocess", "runtime", "model", "segment"},
    "train": {"formats", "text", "preprocess", "runtime", "model", "train"},
    "": {"formats", "text", "preprocess", "runtime", "model", "segment", "train", ""},
    "image": {"formats", "text", "preprocess", "runtime", "model", "segment", "train", "", "image"},
}
NO_TORCH = {"formats", "text"}
TORCH_INCLUDE = re.compile(r"^(torch|ATen|c10)/")
OPENCV_INCLUDE = re.compile(r"^opencv2/")
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
INTERNAL_MARK = "// Internal header"
GENERATED = {"groupvit/version.h"}  # configured from version.h.in, installed beside the others
# Folders that hold no sources of their own (data, CI hooks).
NOT_SOURCE = {".ci", "fuzz/corpus", "fuzz/regressions"}


def tracked_files(root: Path):
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if (root / p).is_file()]


def layer_of(path: str):
    """'groupvit/model/x.h' -> 'model'; 'groupvit/groupvit.h' -> ''; None outside groupvit/."""
    parts = path.split("/")
    if parts[0] != "groupvit":
        return None
    return parts[1] if len(parts) > 2 else ""


def public_headers(root: Path):
    text = (root / "groupvit/CMakeLists.txt").read_text()
    m = re.search(r"set\(GROUPVIT_PUBLIC_HEADERS\s+(.*?)\)", text, re.S)
    if not m:
        raise SystemExit("check_layout: no set(GROUPVIT_PUBLIC_HEADERS ...) in groupvit/CMakeLists.txt")
    return {"groupvit/" + h for h in m.group(1).split()}


def includes(root: Path, path: str):
    return INCLUDE.findall((root / path).read_text(errors="replace"))


def check(root: Path):
    faults = []
    files = tracked_files(root)
    sources = [f for f in files if f.endswith((".h", ".cpp", ".h.in"))]
    public = public_headers(root)

    for h in sorted(public):
        if not (root / h).is_file():
            faults.append(f"groupvit/CMakeLists.txt: public header {h} does not exist")

    for f in sources:
        layer = layer_of(f)
        incs = includes(root, f)
        if layer is not None:
            if layer not in LAYERS:
                faults.append(f"{f}: folder groupvit/{layer}/ is not a layer of scripts/check_layout.py")
                continue
            for inc in incs:
                if inc.startswith("groupvit/"):
                    dep = layer_of(inc)
                    if dep not in LAYERS[layer]:
                        faults.append(f"{f}: includes {inc}, but groupvit/{layer or '.'}/ may only use "
                                      f"{', '.join(sorted(d or 'groupvit.h' for d in LAYERS[layer]))}")
                if layer in NO_TORCH and (TORCH_INCLUDE.match(inc) or OPENCV_INCLUDE.match(inc)):
                    faults.append(f"{f}: includes <{inc}>, but groupvit/{layer}/ is free of LibTorch and OpenCV")
                if layer != "image" and OPENCV_INCLUDE.match(inc):
                    faults.append(f"{f}: includes <{inc}>; only groupvit/image/ uses OpenCV")
            if f.endswith(".h"):
                first = (root / f).read_text().split("\n", 1)[0]
                if f in public:
                    if first.startswith(INTERNAL_MARK):
                        faults.append(f"{f}: marked internal but listed in GROUPVIT_PUBLIC_HEADERS")
                    for inc in incs:
                        if inc.startswith("groupvit/") and inc not in public and inc not in GENERATED:
                            faults.append(f"{f}: public header includes the internal {inc} (not installed)")
                elif not first.startswith(INTERNAL_MARK):
                    faults.append(f"{f}: neither in GROUPVIT_PUBLIC_HEADERS nor starting with '{INTERNAL_MARK}'")
        elif f.startswith(("apps/", "examples/")):
            for inc in incs:
                if inc.startswith("groupvit/") and inc not in public and inc not in GENERATED:
                    faults.append(f"{f}: includes the library's internal header {inc}; use a public one")

    readme = (root / "README.md").read_text()
    layout = readme[readme.find("## Layout"):]
    layout = layout[:layout.find("\n## ", 4)]
    # Every top-level folder has its row, and so does every layer of groupvit/ (deeper folders, such as
    # test/cuda/, are described in their top-level folder's row).
    folders = set()
    for f in files:
        parts = f.split("/")[:-1]
        if parts:
            folders.add(parts[0] if parts[0] != "groupvit" or len(parts) == 1 else "/".join(parts[:2]))
    for folder in sorted(folders - NOT_SOURCE):
        if f"`{folder}/`" not in layout:
            faults.append(f"README.md: the Layout table has no row for {folder}/")
    return faults


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = ap.parse_args()
    faults = check(args.root)
    for f in faults:
        print(f)
    print(f"check_layout: {len(faults)} fault(s)")
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
