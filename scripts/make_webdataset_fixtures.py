#!/usr/bin/env python3
"""WebDataset shards for the shard reader (apps/batch/webdataset.cpp, test/test_webdataset.cpp).

Usage: make_webdataset_fixtures.py OUT_DIR

Writes tar shards with Python's tarfile (the writer WebDataset's own tools use) and gzip, good and
damaged, and OUT_DIR/expected.json saying what a correct reader yields for each: the samples in order
(key, extension -> sha256 of the bytes), computed here from the members as written, with WebDataset's
rules (key = path up to the first '.' of the base name, extension lower-cased, consecutive members of one
key grouped, non-regular members and names without '.' or starting with '.' skipped), and which errors
the reader must report.

Shards:
  plain.tar, plain.tar.gz, plain.tgz   samples with .jpg-like bytes, .txt, .json, a .seg.png, an upper-case
                                       .TXT, an empty member, a sub/KEY.jpg, hidden names, a key that comes
                                       back non-consecutively (a second sample with that key)
  truncated.tar, truncated.tar.gz      plain.tar(.gz) cut inside the data of a member: the samples before
                                       that member's sample (for .tar.gz: a prefix of them, at least
                                       min_samples: see build()), then one error
  garbage.tar                          seeded random bytes: no samples, one error
  zero.tar                             0 bytes (a failed download): no samples, one error
  empty.tar                            a tar with no members: no samples, no error
  odd.tar                              directory entries, a symlink, a hard link, names without extension
  dupext.tar                           one sample with two .jpg members: the first kept, one error
  shard-000.tar .. shard-002.tar       for brace patterns; 001 is pax (long names), 002 GNU format
Also "oversize" (plain.tar read with a small max_member_bytes: its big members skipped and reported).

Deterministic: fixed contents (random.Random with a fixed seed), mtimes, owners and modes, gzip mtime 0.
Builds in a temporary folder beside OUT_DIR and renames it into place (replacing an older one).
"""

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import sys
import tarfile
import tempfile
import zlib

MTIME = 1700000000
SEED = 20240601
# The output block of libarchive's gzip filter (archive_read_support_filter_gzip.c, out_block_size).
GZIP_BLOCK = 64 * 1024


def jpeg_like(rng, size):
    """Bytes that start and end like a JPEG (SOI ... EOI): the reader must not care what they are."""
    return b"\xff\xd8\xff\xe0" + bytes(rng.getrandbits(8) for _ in range(size - 6)) + b"\xff\xd9"


def png_like(rng, size):
    return b"\x89PNG\r\n\x1a\n" + bytes(rng.getrandbits(8) for _ in range(size - 8))


def split_name(path):
    """WebDataset's base_plus_ext (plus: an empty extension is no extension), or None."""
    slash = path.rfind("/")
    base = slash + 1
    dot = path.find(".", base)
    if dot < 0 or dot == base or dot + 1 == len(path):
        return None
    return path[:dot], path[dot + 1:].lower()


def tarinfo(name, size=0, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.size = size if kind == tarfile.REGTYPE else 0
    info.type = kind
    info.linkname = linkname
    info.mtime = MTIME
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_tar(fileobj, members, fmt=tarfile.USTAR_FORMAT):
    """members: (name, bytes) for regular files, or (name, kind, linkname) for others. Returns
    {name: (offset of the data, size)} for the regular members, in the uncompressed stream."""
    offsets = {}
    with tarfile.open(fileobj=fileobj, mode="w", format=fmt) as tar:
        for m in members:
            if len(m) == 2:
                name, data = m
                tar.addfile(tarinfo(name, len(data)), io.BytesIO(data))
                # tar.offset is the end of the member's data, padded to a 512-byte block.
                offsets[name] = (tar.offset - (len(data) + 511) // 512 * 512, len(data))
            else:
                name, kind, linkname = m
                tar.addfile(tarinfo(name, kind=kind, linkname=linkname))
    return offsets


def tar_bytes(members, fmt=tarfile.USTAR_FORMAT):
    buf = io.BytesIO()
    offsets = write_tar(buf, members, fmt)
    return buf.getvalue(), offsets


def gzip_bytes(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def expected_samples(members, stop_at=None, max_bytes=None, first_names=None):
    """What a correct reader yields: (samples, error members). stop_at: the name of the member inside
    whose data the shard is cut (its sample and everything after it are lost; the samples before it
    were completed when its header was read). max_bytes: members over it are skipped and reported.
    first_names: if a list, gets the name of each sample's first member."""
    samples, errors = [], []
    current = None
    for m in members:
        if len(m) != 2:
            continue  # not a regular file
        name, data = m
        parts = split_name(name)
        if parts is None:
            continue
        key, ext = parts
        if current is None or current["key"] != key:
            if current is not None and current["members"]:
                samples.append(current)
            current = {"key": key, "members": {}}
            if first_names is not None:
                first_names.append(name)
        if name == stop_at:
            return samples, errors
        if ext in current["members"]:
            errors.append(name)
            continue
        if max_bytes is not None and len(data) > max_bytes:
            errors.append(name)
            continue
        current["members"][ext] = sha(data)
    if current is not None and current["members"]:
        samples.append(current)
    return samples, errors


def plain_members(rng):
    caption = ["a photo of a cat", "two dogs on a beach", "a red bus", "Ünïcode caption, ok"]
    return [
        ("000000.jpg", jpeg_like(rng, 3000)),
        ("000000.txt", caption[0].encode()),
        ("000000.json", json.dumps({"caption": caption[0], "id": 0}, sort_keys=True).encode()),
        ("._000001.jpg", b"AppleDouble junk"),  # hidden base name: skipped, does not end the sample
        ("000001.jpg", jpeg_like(rng, 5000)),
        ("000001.seg.png", png_like(rng, 1200)),
        ("000001.txt", caption[1].encode()),
        ("sub/000002.jpg", jpeg_like(rng, 2500)),
        ("sub/000002.txt", caption[2].encode()),
        ("sub/.hidden.txt", b"hidden"),
        ("000003.jpg", jpeg_like(rng, 20000)),  # the big one: truncated.tar is cut inside it
        ("000003.TXT", caption[3].encode("utf-8")),
        ("000003.cls", b""),  # empty member
        ("000004.jpg", jpeg_like(rng, 4000)),
        ("000004.txt", b"caption 4"),
        ("000000.extra.json", b'{"again": true}'),  # key 000000 again, not consecutive: another sample
    ] + [(f"{k:06d}.{ext}", jpeg_like(rng, 30000) if ext == "jpg" else f"caption {k}".encode())
         for k in range(5, 10) for ext in ("jpg", "txt")]  # 150 KB more: truncated.tar.gz is cut in 000008


def cut_gzip(compressed, target_lo, target_hi):
    """The shortest prefix of `compressed` whose decompressible output ends inside [target_lo, target_hi)."""
    lo, hi = 0, len(compressed)
    while lo < hi:
        mid = (lo + hi) // 2
        out = len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(compressed[:mid]))
        if out < target_lo:
            lo = mid + 1
        else:
            hi = mid
    out = len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(compressed[:lo]))
    if not target_lo <= out < target_hi:
        raise SystemExit(f"cannot cut the gzip stream inside [{target_lo}, {target_hi}): got {out}")
    return lo


def build(out):
    rng = random.Random(SEED)
    shards = {}  # file name -> expected entry
    files = {}  # file name -> bytes

    def add(name, data, members, stop_at=None, error_kind=None):
        files[name] = data
        samples, errors = expected_samples(members, stop_at)
        entry = {"samples": samples, "member_errors": errors, "archive_error": error_kind is not None}
        if error_kind:
            entry["archive_error_kind"] = error_kind
            entry["cut_member"] = stop_at
        shards[name] = entry

    plain = plain_members(rng)
    plain_tar, offsets = tar_bytes(plain)
    add("plain.tar", plain_tar, plain)
    plain_gz = gzip_bytes(plain_tar)
    add("plain.tar.gz", plain_gz, plain)
    add("plain.tgz", plain_gz, plain)

    big_offset, big_size = offsets["000003.jpg"]
    add("truncated.tar", plain_tar[:big_offset + big_size // 2], plain, stop_at="000003.jpg", error_kind="truncated")
    # libarchive's gzip filter inflates into 64 KiB blocks and, on reaching the cut, fails without handing
    # on the partly filled block: so a .tar.gz reader gets between (all samples before the cut member) and
    # (those whose next sample's first header lies 64 KiB or more before the end of the decodable data).
    late_offset, late_size = offsets["000008.jpg"]
    cut = cut_gzip(plain_gz, late_offset + late_size // 4, late_offset + 3 * late_size // 4)
    decodable = len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(plain_gz[:cut]))
    add("truncated.tar.gz", plain_gz[:cut], plain, stop_at="000008.jpg", error_kind="truncated")
    first_names = []
    expected_samples(plain, first_names=first_names)
    shards["truncated.tar.gz"]["min_samples"] = sum(
        1 for nxt in first_names[1:] if offsets[nxt][0] <= decodable - GZIP_BLOCK)
    assert shards["truncated.tar.gz"]["min_samples"] >= 3, "cut too early to check the samples before it"

    garbage = bytes(rng.getrandbits(8) for _ in range(5000))
    assert garbage[:2] != b"\x1f\x8b"
    files["garbage.tar"] = garbage
    shards["garbage.tar"] = {"samples": [], "member_errors": [], "archive_error": True, "archive_error_kind": "garbage"}
    files["zero.tar"] = b""
    shards["zero.tar"] = {"samples": [], "member_errors": [], "archive_error": True, "archive_error_kind": "garbage"}

    empty, _ = tar_bytes([])
    add("empty.tar", empty, [])

    odd = [
        ("sub", tarfile.DIRTYPE, ""),
        ("sub/deeper", tarfile.DIRTYPE, ""),
        ("README", b"no extension: skipped"),
        ("sub/Makefile", b"no extension either"),
        ("a.", b"empty extension: skipped"),
        ("k1.jpg", jpeg_like(rng, 700)),
        ("k1.link.jpg", tarfile.SYMTYPE, "k1.jpg"),  # same key, not regular: skipped
        ("k1.hard.jpg", tarfile.LNKTYPE, "k1.jpg"),  # a hard link: not regular for WebDataset either
        ("k1.txt", b"one"),
        ("sub/deeper/k2.v1.x.bin", bytes(range(256))),
        ("fifo.jpg", tarfile.FIFOTYPE, ""),
        ("k3.JPEG", jpeg_like(rng, 300)),
    ]
    add("odd.tar", tar_bytes(odd)[0], odd)

    dup = [("d.jpg", jpeg_like(rng, 500)), ("d.txt", b"caption"), ("d.jpg", jpeg_like(rng, 600)), ("e.txt", b"next")]
    add("dupext.tar", tar_bytes(dup)[0], dup)

    long_dir = "a-directory-name-long-enough-that-ustar-cannot-hold-it/" * 3
    for i, fmt in enumerate([tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]):
        prefix = long_dir if fmt != tarfile.USTAR_FORMAT else ""
        members = []
        for j in range(2):
            key = f"{prefix}s{i}-{j:04d}"
            members += [(key + ".jpg", jpeg_like(rng, 800 + 100 * j)), (key + ".txt", f"shard {i} sample {j}".encode())]
        add(f"shard-{i:03d}.tar", tar_bytes(members, fmt)[0], members)

    oversize_limit = 4096
    oversize_samples, oversize_errors = expected_samples(plain, max_bytes=oversize_limit)
    expected = {
        "shards": shards,
        "oversize": {"file": "plain.tar", "max_member_bytes": oversize_limit, "samples": oversize_samples,
                     "member_errors": oversize_errors},
        "brace": {"pattern": "shard-{000..002}.tar", "files": [f"shard-{i:03d}.tar" for i in range(3)]},
    }
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = os.path.abspath(sys.argv[1])
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".webdataset-", dir=parent)
    try:
        build(tmp)
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"make_webdataset_fixtures: wrote {out}")


if __name__ == "__main__":
    main()
