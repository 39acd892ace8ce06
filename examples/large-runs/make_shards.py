#!/usr/bin/env python3
"""Packs a directory of images into WebDataset shards (plain POSIX tar files) for `groupvit segment/embed`.

    make_shards.py SRC_DIR OUT_PATTERN [--per-shard N]

    make_shards.py photos/ shards/photos-%06d.tar --per-shard 1000
    groupvit segment --model M --input 'shards/photos-{000000..000041}.tar' --output out/ ...

Every image under SRC_DIR (searched recursively; extensions jpg, jpeg, png, bmp, tif, tiff, webp, case
ignored) becomes one sample: a member KEY.EXT with the file's bytes as they are (no re-encoding), and,
when a caption file with the same stem lies beside it (photos/a/cat.jpg + photos/a/cat.txt), a member
KEY.txt. KEY is the image's path relative to SRC_DIR without its extension ("a/cat"); the CLI then
names the sample SHARD/KEY (e.g. "photos-000000/a/cat") in results.jsonl and under --output.

WebDataset cuts a member's key at the first '.' of its base name, so further dots in a file name
("img.v2.jpg") are replaced by '_' in the key ("img_v2.jpg" in the shard; the CLI would otherwise see
key "img" with extension "v2.jpg"). Two images that end up with the same key (a.jpg and a.png, or
img.v2.jpg and img_v2.jpg) are refused before anything is written.

The output is deterministic: images in byte order of their relative paths, N samples a shard (the last
one may have fewer), members in sample order (image first, then caption), mtime 0, uid/gid 0, mode
0644, no user/group names. OUT_PATTERN is a printf-style pattern with one integer field for the shard
number (%06d, %03d, ...), counted from --first (default 0). A .tar.gz/.tgz pattern writes gzipped shards
(the gzip header's time is 0 too). Each shard is written to a temporary name and renamed into place.
The last line printed is a brace pattern that names all the shards written, for --input.
"""
import argparse
import gzip
import io
import os
import sys
import tarfile
from pathlib import Path

IMAGE_EXTENSIONS = {"jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp"}  # the CLI's default --extensions


def find_images(src, extensions):
    """[(relative posix path, Path)] of the images under src, in byte order of the relative paths."""
    found = []
    for root, dirs, files in os.walk(src, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            stem, dot, ext = name.rpartition(".")
            if dot and stem and ext.lower() in extensions:
                path = Path(root) / name
                found.append((path.relative_to(src).as_posix(), path))
    found.sort(key=lambda item: item[0].encode("utf-8", "surrogateescape"))
    return found


def sample_key(rel):
    """The WebDataset key of an image at relative path rel: the path less its extension, dots of the base
    name replaced by '_' (WebDataset's key ends at the base name's first dot)."""
    parent, _, base = rel.rpartition("/")
    stem = base.rpartition(".")[0].replace(".", "_")
    return f"{parent}/{stem}" if parent else stem


def plan_samples(src, extensions):
    """[(key, [(member name, Path)])] for every image under src; raises SystemExit on a key collision."""
    samples, owner = [], {}
    for rel, path in find_images(src, extensions):
        key = sample_key(rel)
        if key in owner:
            raise SystemExit(f"make_shards.py: {rel} and {owner[key]} would both be sample {key!r} "
                             "(rename one of them)")
        owner[key] = rel
        ext = rel.rpartition(".")[2].lower()
        members = [(f"{key}.{ext}", path)]
        caption = path.with_name(path.name.rpartition(".")[0] + ".txt")
        if caption.is_file():
            members.append((f"{key}.txt", caption))
        samples.append((key, members))
    return samples


def shard_name(pattern, index):
    try:
        name = pattern % index
    except (TypeError, ValueError) as e:
        raise SystemExit(f"make_shards.py: OUT_PATTERN {pattern!r} needs one integer field such as %06d ({e})")
    if name == pattern % (index + 1):
        raise SystemExit(f"make_shards.py: OUT_PATTERN {pattern!r} gives every shard the same name")
    return name


def add_member(tar, name, path):
    data = path.read_bytes()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_shard(path, samples):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    gz = path.name.lower().endswith((".tar.gz", ".tgz"))
    try:
        with open(tmp, "wb") as raw:
            # gzip.GzipFile with mtime=0 and no file name in the header: the same bytes on every run.
            stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if gz else raw
            try:
                with tarfile.open(fileobj=stream, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                    for _, members in samples:
                        for name, src in members:
                            add_member(tar, name, src)
            finally:
                if gz:
                    stream.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def brace_pattern(pattern, first, last):
    """'shards/x-%06d.tar', 0, 41 -> 'shards/x-{000000..000041}.tar' (the CLI's --input syntax)."""
    if first == last:
        return pattern % first
    probe = pattern.replace("%%", "\1")
    i = probe.find("%")
    j = i + 1
    while j < len(probe) and not probe[j].isalpha():
        j += 1
    field = probe[i:j + 1]
    rng = "{" + field % first + ".." + field % last + "}"
    return (probe[:i] + "\0" + probe[j + 1:]).replace("\1", "%").replace("\0", rng)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Pack a directory of images (+ same-stem .txt captions) into WebDataset tar shards "
                    "for groupvit's --input.",
        epilog="example: make_shards.py photos/ shards/photos-%06d.tar --per-shard 1000  (then "
               "--input 'shards/photos-{000000..000041}.tar'; the last line printed is that pattern)")
    ap.add_argument("src_dir", metavar="SRC_DIR", help="directory of images, searched recursively")
    ap.add_argument("out_pattern", metavar="OUT_PATTERN",
                    help="shard path with one printf integer field, e.g. shards/photos-%%06d.tar "
                         "(.tar.gz: gzipped shards)")
    ap.add_argument("--per-shard", type=int, default=1000, metavar="N", help="samples per shard (default 1000)")
    ap.add_argument("--first", type=int, default=0, metavar="I", help="number of the first shard (default 0)")
    ap.add_argument("--extensions", default=",".join(sorted(IMAGE_EXTENSIONS)),
                    help="comma-separated image extensions (default: %(default)s)")
    ap.add_argument("--quiet", action="store_true", help="print only the final brace pattern")
    args = ap.parse_args(argv)

    src = Path(args.src_dir)
    if not src.is_dir():
        ap.error(f"SRC_DIR {src} is not a directory")
    if args.per_shard < 1:
        ap.error("--per-shard must be at least 1")
    if args.first < 0:
        ap.error("--first must not be negative")
    if not args.out_pattern.lower().endswith((".tar", ".tar.gz", ".tgz")):
        ap.error("OUT_PATTERN must end in .tar, .tar.gz or .tgz (the CLI takes only those as shards)")
    extensions = {e.strip().lstrip(".").lower() for e in args.extensions.split(",") if e.strip()}
    shard_name(args.out_pattern, args.first)  # validates the pattern before the walk

    samples = plan_samples(src, extensions)
    if not samples:
        raise SystemExit(f"make_shards.py: no images ({','.join(sorted(extensions))}) under {src}")
    groups = [samples[i:i + args.per_shard] for i in range(0, len(samples), args.per_shard)]
    captions = sum(1 for _, m in samples if len(m) > 1)
    for n, group in enumerate(groups):
        path = shard_name(args.out_pattern, args.first + n)
        write_shard(path, group)
        if not args.quiet:
            print(f"{path}: {len(group)} samples", file=sys.stderr)
    if not args.quiet:
        print(f"{len(samples)} images ({captions} with captions) in {len(groups)} shards", file=sys.stderr)
    print(brace_pattern(args.out_pattern, args.first, args.first + len(groups) - 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
