#!/usr/bin/env python3
"""Reference outputs for the image front end (test/test_image.cpp).

Usage: make_image_fixtures.py OUT_DIR

Writes image files of every kind the decoder must handle (real photos bundled in the scikit-image wheel,
generated images of many sizes, modes, formats and EXIF orientations), and for each one what the Python
reference makes of it:
  decoded          transformers.image_utils.load_image(path) as uint8 HWC (Pillow: exif_transpose + RGB)
  <preset>_uint8   the uint8 HWC image after the processor's resize + center crop, before rescale/normalise
  <preset>_pixels  the processor's pixel_values[0], float32 CHW (for FLOAT_PIXELS; the others are checked
                   here against refs/luts.pt, the processor's value for each (channel, byte), to keep it small)
Presets: "clip" and the other configs/*.json run through transformers' CLIPImageProcessorPil (the Pillow
backend; in transformers 5 plain CLIPImageProcessor is the torchvision backend), and "nvlabs", the original
GroupViT evaluation (mmcv rescale size, Pillow bicubic, ImageNet mean/std; see nvlabs_reference).
Also Pillow resizes with every supported filter, and broken files that load_image must refuse.

Deterministic, no network (only image files inside the scikit-image wheel are read, never fetched).
Does nothing when OUT_DIR/manifest.json exists; builds in a temporary folder and renames it into place.
"""

import io
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import warnings
import zlib

import cv2
import numpy as np
import torch
from PIL import Image, PngImagePlugin
from transformers import CLIPImageProcessorPil
from transformers.image_utils import load_image

MANIFEST = "manifest.json"
# Pillow's warning for palette_alpha.png is the behaviour under test (graded palette alpha is dropped).
warnings.filterwarnings("ignore", message="Palette images with Transparency expressed in bytes")

# The GroupViT hub checkpoints' preprocessor_config.json (legacy integer sizes, as published).
CLIP_CONFIG = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}
# Other size rules, filters and the padding branch of center_crop, in the modern dict form.
EXTRA_CONFIGS = {
    "square_bilinear": {"size": {"height": 160, "width": 192}, "resample": 2, "do_center_crop": False},
    "capped_lanczos": {"size": {"shortest_edge": 200, "longest_edge": 300}, "resample": 1,
                       "crop_size": {"height": 180, "width": 240}},
    "pad_crop": {"do_resize": False, "crop_size": {"height": 250, "width": 333}, "do_normalize": False},
}
NVLABS = {"longest_edge": 2048, "shortest_edge": 448,
          "image_mean": [123.675, 116.28, 103.53], "image_std": [58.395, 57.12, 57.375]}
# Only these images also run through the extra configs (they are about arithmetic, not decoding).
EXTRA_CONFIG_IMAGES = {"astronaut_png", "chelsea_png", "camera_png", "gen_17x13", "gen_1x1", "gen_3000x40",
                       "gen_1x300", "gen_300x1", "gen_100x50", "gen_223x225", "palette_trns_png"}
# pixel_values are stored in full for these (image, preset) pairs; for the rest the test maps the uint8
# reference through the per-preset lookup table (refs/luts.pt), which this script checks against the
# processor's pixel_values for every image and preset.
FLOAT_PIXELS = {(n, "clip") for n in ["astronaut_png", "chelsea_jpg", "camera_png", "rocket_jpg", "gen_17x13",
                                       "gen_3000x40", "gen_1x300", "gen_223x225", "rgba_png", "exif6_jpg"]}
FLOAT_PIXELS |= {("astronaut_png", "nvlabs"), ("gen_17x13", "capped_lanczos"), ("gen_100x50", "pad_crop"),
                 ("chelsea_png", "square_bilinear")}
# The NVlabs preset upscales to a 448 short side, so its pixels are kept for a subset only; every image
# records its output size (the size rule is where presets differ most).
NVLABS_IMAGES = {"astronaut_png", "chelsea_png", "rocket_jpg", "camera_png", "gen_1x1", "gen_17x13", "gen_3000x40",
                 "gen_40x3000", "gen_1x300", "gen_449x2", "gen_223x225", "gen_1000x999", "exif6_jpg"}
RESIZE_SOURCES = ["astronaut_png", "gen_640x480", "gen_48x36"]
RESIZE_FILTERS = {"lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
# Down, one axis only, extreme; (356, 200) / (357, 200) sit either side of Pillow 13's switch to running the
# vertical pass first on a 512 x 512 source (see resize_pillow), and (1023, 17) is deep inside it.
RESIZE_SIZES = [(224, 224), (100, 37), (512, 300), (300, 512), (5, 3), (1, 1), (1023, 17), (356, 200), (357, 200),
                (500, 100)]
# Plus, on the small gen_48x36, random size pairs around it (up and down) with every filter.
SWEEP_SOURCE, SWEEP_PAIRS = "gen_48x36", 60
# cv2.resize INTER_LINEAR: a colour photo, a grey one, small generated images of odd sizes.
OPENCV_RESIZE_SOURCES = ["astronaut_png", "camera_png", "gen_48x36", "gen_17x13"]
OPENCV_PAIRS = 40


def synthetic(width, height, seed):
    """Smooth waves, noise and saturated blocks: exercises interpolation, overshoot and clipping."""
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [128 + 90 * np.sin(x / (5.0 + 3 * c) + y / (9.0 + 2 * c) + c) for c in range(3)]
    img = np.stack(channels, -1) + rs.normal(0, 20, (height, width, 3))
    for _ in range(6):
        x0, y0 = rs.randint(0, width), rs.randint(0, height)
        w, h = rs.randint(1, max(2, width // 3 + 1)), rs.randint(1, max(2, height // 3 + 1))
        img[y0:y0 + h, x0:x0 + w] = rs.choice([0, 255], size=3)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def png_16bit(arr, color_type):
    """A 16-bit PNG (Pillow cannot write 16-bit colour): big-endian samples, filter 0, one IDAT."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def exif_bytes(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def xmp_packet(orientation):
    return ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="%d"/>'
            "</rdf:RDF></x:xmpmeta>" % orientation).encode()


def write_inputs(inputs):
    """Writes every input file; returns [(name, filename)] in a fixed order."""
    files = []

    def add(name, filename, writer):
        path = os.path.join(inputs, filename)
        writer(path)
        files.append((name, filename))

    # Real photos from the scikit-image wheel: the originals, and re-encoded in the other format.
    import skimage

    data_dir = os.path.join(os.path.dirname(skimage.__file__), "data")
    for base in ["astronaut.png", "chelsea.png", "coffee.png", "camera.png", "coins.png", "horse.png", "logo.png",
                 "motorcycle_left.png", "ihc.png", "page.png", "color.png", "rocket.jpg", "hubble_deep_field.jpg",
                 "retina.jpg", "multipage.tif"]:
        src = os.path.join(data_dir, base)
        if not os.path.isfile(src):  # never download: a wheel without it just has fewer fixtures
            print(f"skipping {base}: not bundled in this scikit-image wheel")
            continue
        stem, ext = os.path.splitext(base)
        add(f"{stem}_{ext[1:]}", base, lambda p, s=src: shutil.copyfile(s, p))
        if base in ("astronaut.png", "chelsea.png", "coffee.png", "camera.png"):
            add(f"{stem}_jpg", stem + ".jpg", lambda p, s=src: Image.open(s).save(p, quality=90))
        if base == "rocket.jpg":
            add("rocket_png", "rocket.png", lambda p, s=src: Image.open(s).save(p))

    # Generated RGB images of many sizes and aspect ratios, PNG (lossless: isolates the resize).
    sizes = [(1, 1), (2, 2), (1, 7), (7, 1), (1, 300), (300, 1), (3000, 40), (40, 3000), (17, 13), (223, 225),
             (224, 224), (225, 224), (224, 300), (100, 50), (640, 480), (480, 640), (1000, 999), (449, 2),
             (300, 1000), (48, 36)]
    for i, (w, h) in enumerate(sizes):
        add(f"gen_{w}x{h}", f"gen_{w}x{h}.png", lambda p, w=w, h=h, i=i: Image.fromarray(synthetic(w, h, i)).save(p))

    rgb = synthetic(320, 240, 100)
    alpha = (np.add.outer(np.arange(240), np.arange(320)) % 256).astype(np.uint8)
    grey = synthetic(300, 200, 101)[..., 1]
    add("gray_png", "gray.png", lambda p: Image.fromarray(grey).save(p))
    add("gray_alpha_png", "gray_alpha.png",
        lambda p: Image.fromarray(np.stack([grey, grey[::-1]], -1), "LA").save(p))
    add("rgba_png", "rgba.png", lambda p: Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(p))
    add("bilevel_png", "bilevel.png", lambda p: Image.fromarray(grey > 128).save(p))

    def palette(p, transparency):
        im = Image.fromarray(rgb).quantize(colors=37, method=Image.Quantize.MEDIANCUT)
        im.save(p, transparency=transparency) if transparency is not None else im.save(p)

    add("palette_png", "palette.png", lambda p: palette(p, None))
    # Colour keys (tRNS) that survive load_image's convert("RGB"): CLIPImageProcessorPil paints them white.
    add("palette_trns_png", "palette_trns.png", lambda p: palette(p, 5))
    add("rgb_trns_png", "rgb_trns.png", lambda p: Image.fromarray(rgb).save(p, transparency=tuple(int(v) for v in rgb[0, 0])))
    add("gray_trns_png", "gray_trns.png", lambda p: Image.fromarray(grey).save(p, transparency=int(grey[0, 0])))
    # Graded palette alpha: Pillow drops it on convert("RGB"), nothing is painted.
    add("palette_alpha_png", "palette_alpha.png",
        lambda p: palette(p, bytes(range(0, 256, 7))))
    rs = np.random.RandomState(7)
    g16 = rs.randint(0, 65536, (50, 70)).astype(np.uint16)
    g16[:, :10] = rs.randint(0, 256, (50, 10))  # some values below 256 survive Pillow's clip
    add("gray16_png", "gray16.png", lambda p: Image.fromarray(g16).save(p))
    add("rgb16_png", "rgb16.png",
        lambda p: open(p, "wb").write(png_16bit(rs.randint(0, 65536, (40, 60, 3)).astype(np.uint16), 2)))
    add("rgba16_png", "rgba16.png",
        lambda p: open(p, "wb").write(png_16bit(rs.randint(0, 65536, (30, 20, 4)).astype(np.uint16), 6)))

    # JPEG variants (lossy: the decoder bound applies).
    add("rgb_q90_jpg", "rgb_q90.jpg", lambda p: Image.fromarray(rgb).save(p, quality=90))
    add("rgb_444_jpg", "rgb_444.jpg", lambda p: Image.fromarray(rgb).save(p, quality=95, subsampling=0))
    add("rgb_progressive_jpg", "rgb_progressive.jpg",
        lambda p: Image.fromarray(rgb).save(p, quality=80, progressive=True))
    add("odd_size_jpg", "odd_size.jpg", lambda p: Image.fromarray(synthetic(333, 77, 102)).save(p, quality=85))
    add("gray_jpg", "gray.jpg", lambda p: Image.fromarray(grey).save(p, quality=90))
    add("cmyk_jpg", "cmyk.jpg", lambda p: Image.fromarray(rgb).convert("CMYK").save(p, quality=90))
    for o in (3, 6):
        add(f"exif{o}_jpg", f"exif{o}.jpg",
            lambda p, o=o: Image.fromarray(synthetic(160, 90, 110 + o)).save(p, quality=90, exif=exif_bytes(o)))
    add("xmp6_jpg", "xmp6.jpg", lambda p: Image.fromarray(synthetic(160, 90, 120)).save(p, quality=90,
                                                                                       xmp=xmp_packet(6)))
    add("exif1_xmp6_jpg", "exif1_xmp6.jpg",
        lambda p: Image.fromarray(synthetic(160, 90, 121)).save(p, quality=90, exif=exif_bytes(1), xmp=xmp_packet(6)))

    # Every EXIF orientation on a lossless PNG (eXIf chunk), and XMP in an iTXt chunk.
    for o in range(1, 9):
        add(f"exif{o}_png", f"exif{o}.png",
            lambda p, o=o: Image.fromarray(synthetic(37, 23, 130 + o)).save(p, exif=exif_bytes(o)))

    def png_xmp(p):
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp_packet(8).decode())
        Image.fromarray(synthetic(37, 23, 140)).save(p, pnginfo=info)

    add("xmp8_png", "xmp8.png", png_xmp)

    # Other containers.
    add("rgb_bmp", "rgb.bmp", lambda p: Image.fromarray(synthetic(101, 57, 150)).save(p))
    add("palette_bmp", "palette.bmp",
        lambda p: Image.fromarray(rgb).quantize(colors=16, method=Image.Quantize.MEDIANCUT).save(p))
    add("gray_bmp", "gray.bmp", lambda p: Image.fromarray(grey).save(p))
    add("rgb_tif", "rgb.tif", lambda p: Image.fromarray(synthetic(90, 61, 160)).save(p))
    add("rgb_lzw_tif", "rgb_lzw.tif", lambda p: Image.fromarray(rgb).save(p, compression="tiff_lzw"))
    add("gray16_tif", "gray16.tif", lambda p: Image.fromarray(g16).save(p))
    for o in range(2, 9):  # TIFF readers orient while loading; check they agree for every orientation
        add(f"exif{o}_tif", f"exif{o}.tif",
            lambda p, o=o: Image.fromarray(synthetic(45, 30, 160 + o)).save(p, tiffinfo={274: o}))
    # Compressed on purpose: Pillow 13 memory-maps uncompressed single-channel TIFFs opened from a path and then
    # skips their orientation (the same file from bytes is oriented); the C++ decoder always orients.
    add("gray16_exif5_tif", "gray16_exif5.tif",
        lambda p: Image.fromarray(g16[:20]).save(p, tiffinfo={274: 5}, compression="tiff_lzw"))
    add("lossless_webp", "lossless.webp", lambda p: Image.fromarray(rgb).save(p, lossless=True))
    add("lossy_webp", "lossy.webp", lambda p: Image.fromarray(rgb).save(p, quality=80))
    add("rgba_webp", "rgba.webp",
        lambda p: Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(p, lossless=True))
    add("exif8_webp", "exif8.webp",
        lambda p: Image.fromarray(synthetic(64, 40, 170)).save(p, lossless=True, exif=exif_bytes(8)))
    return files


def write_errors(errors_dir, inputs):
    """Files the decoder must refuse; returns [{"file", "reason", "pillow_refuses"}]. Those Pillow refuses too are
    checked here; the others are refused by design (the C++ test checks the message names the reason)."""
    cases = []

    def add(filename, reason, data, pillow_refuses=True):
        with open(os.path.join(errors_dir, filename), "wb") as f:
            f.write(data)
        cases.append({"file": f"errors/{filename}", "reason": reason, "pillow_refuses": pillow_refuses})

    png = open(os.path.join(inputs, "gen_640x480.png"), "rb").read()
    jpg = open(os.path.join(inputs, "rgb_q90.jpg"), "rb").read()
    add("empty.jpg", "zero bytes", b"")
    add("text.jpg", "text with a .jpg name", b"this is not an image, just text with a .jpg extension\n" * 4)
    add("truncated.png", "PNG cut in the middle of its image data", png[: len(png) // 2])
    add("truncated.jpg", "JPEG cut in the middle of its scan", jpg[: len(jpg) // 2])
    add("header_only.png", "PNG signature and IHDR only", png[:33])
    add("header_only.jpg", "JPEG headers without scan data", jpg[:600])
    rgba_tif = io.BytesIO()
    Image.fromarray(synthetic(64, 48, 180)).convert("RGBA").save(rgba_tif, format="TIFF")
    add("rgba.tif", "8-bit TIFF with alpha: OpenCV premultiplies", rgba_tif.getvalue(), pillow_refuses=False)
    for case in cases:
        if not case["pillow_refuses"]:
            continue
        path = os.path.join(errors_dir, os.path.basename(case["file"]))
        try:
            np.asarray(load_image(path))
        except Exception as e:  # noqa: BLE001 - any refusal is what we want to record
            case["pillow_error"] = f"{type(e).__name__}: {e}".replace(errors_dir, "errors")[:200]
        else:
            raise SystemExit(f"Pillow unexpectedly decoded {path}; the C++ test would demand the wrong thing")
    return cases


def hf_reference(processor, image):
    """The processor's uint8 intermediate and final pixel_values, and a check that they agree."""
    final = processor(images=image, return_tensors="np")["pixel_values"][0]
    chw = processor.process_image(image, do_convert_rgb=processor.do_convert_rgb)
    if processor.do_resize:
        chw = processor.resize(chw, size=processor.size, resample=processor.resample)
    if processor.do_center_crop:
        chw = processor.center_crop(chw, processor.crop_size)
    assert chw.dtype == np.uint8, chw.dtype
    x = chw
    if processor.do_rescale:
        x = processor.rescale(x, processor.rescale_factor)
    if processor.do_normalize:
        x = processor.normalize(x, processor.image_mean, processor.image_std)
    if not np.array_equal(np.asarray(x, dtype=np.float32), final.astype(np.float32)):
        raise SystemExit("the processor's pieces do not reproduce its own output; the fixture would be wrong")
    return np.ascontiguousarray(chw.transpose(1, 2, 0)), final.astype(np.float32)


def mmcv_rescale_size(width, height, longest, shortest):
    """mmcv.imrescale's size for scale=(longest, shortest), as NVlabs' Resize(keep_ratio=True) computes it."""
    factor = min(longest / max(width, height), shortest / min(width, height))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def mmcv_resize(rgb, width, height):
    """mmcv.imresize(img, (w, h)) with its defaults (backend cv2, "bilinear"): cv2.resize INTER_LINEAR. mmcv
    resizes the BGR array cv2.imread gives; the resize treats channels alike, so RGB in gives the same pixels."""
    return cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=cv2.INTER_LINEAR)


def nvlabs_resize(image, shortest, longest, resize="mmcv"):
    """mmcv's imrescale of NVlabs' Resize(keep_ratio=True) to (longest, shortest): cv2 bilinear (resize="mmcv")
    or, for --resize pillow, Pillow bicubic at the same size. A PIL image."""
    w, h = mmcv_rescale_size(image.width, image.height, longest, shortest)
    if resize == "mmcv":
        return Image.fromarray(mmcv_resize(np.asarray(image), w, h))
    return image.resize((w, h), Image.Resampling.BICUBIC)


def nvlabs_reference(image, resize="mmcv"):
    """NVlabs' evaluation front end: nvlabs_resize to (2048, 448), then normalisation by CLIPImageProcessorPil
    with mean/std in 0..255 units."""
    resized = nvlabs_resize(image, NVLABS["shortest_edge"], NVLABS["longest_edge"], resize)
    return hf_reference(nvlabs_normaliser(), resized)


def tensor(a):
    return torch.from_numpy(np.array(a))  # a writable, contiguous copy


def reference_lut(processor):
    """[3, 256]: what the processor's rescale + normalise make of byte value v in channel c."""
    ramp = np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 1, 256)).copy()
    x = ramp
    if processor.do_rescale:
        x = processor.rescale(x, processor.rescale_factor)
    if processor.do_normalize:
        x = processor.normalize(x, processor.image_mean, processor.image_std)
    return np.asarray(x, dtype=np.float32)[:, 0, :]


def nvlabs_normaliser():
    return CLIPImageProcessorPil(do_resize=False, do_center_crop=False, do_rescale=False,
                                 image_mean=NVLABS["image_mean"], image_std=NVLABS["image_std"])


def build(out_dir):
    started = time.time()
    for sub in ("inputs", "errors", "refs", "configs"):
        os.makedirs(os.path.join(out_dir, sub))
    inputs = os.path.join(out_dir, "inputs")
    files = write_inputs(inputs)
    errors = write_errors(os.path.join(out_dir, "errors"), inputs)

    configs = {"clip": CLIP_CONFIG, **EXTRA_CONFIGS}
    processors = {}
    for name, cfg in configs.items():
        with open(os.path.join(out_dir, "configs", f"{name}.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        processors[name] = CLIPImageProcessorPil.from_dict(cfg)
        assert type(processors[name]).__name__ == "CLIPImageProcessorPil"

    luts = {name: reference_lut(p) for name, p in processors.items()}
    luts["nvlabs"] = luts["nvlabs_pillow"] = reference_lut(nvlabs_normaliser())
    torch.save({name: tensor(lut) for name, lut in luts.items()}, os.path.join(out_dir, "refs", "luts.pt"))

    images = []
    decoded_by_name = {}
    for name, filename in files:
        path = os.path.join(inputs, filename)
        opened = Image.open(path)
        orientation = opened.getexif().get(0x0112, 1)
        pil = load_image(path)  # exif_transpose + convert("RGB"), exactly what a transformers user gets
        decoded = np.asarray(pil)
        key = pil.info.get("transparency")
        if key is not None and not (isinstance(key, tuple) and len(key) == 3 and max(key) <= 255):
            raise SystemExit(f"{name}: transparency {key!r} has no colour-key form the C++ side models")
        decoded_by_name[name] = pil
        refs = {"decoded": tensor(decoded)}
        if orientation != 1:  # without exif_transpose, for the flag that turns orientation off
            refs["decoded_stored"] = tensor(np.asarray(Image.open(path).convert("RGB")))
        presets = ["clip"] + (["nvlabs", "nvlabs_pillow"] if name in NVLABS_IMAGES else [])
        presets += list(EXTRA_CONFIGS) if name in EXTRA_CONFIG_IMAGES else []
        for preset in presets:
            if preset in ("nvlabs", "nvlabs_pillow"):
                u8, pixels = nvlabs_reference(pil, "mmcv" if preset == "nvlabs" else "pillow")
            else:
                u8, pixels = hf_reference(processors[preset], pil)
            lut = luts[preset]
            if not np.array_equal(lut[np.arange(3)[:, None, None], u8.transpose(2, 0, 1)], pixels):
                raise SystemExit(f"{name}/{preset}: pixel_values differ from the lookup table of its uint8 image")
            refs[f"{preset}_uint8"] = tensor(u8)
            if (name, preset) in FLOAT_PIXELS:
                refs[f"{preset}_pixels"] = tensor(pixels)
        torch.save(refs, os.path.join(out_dir, "refs", f"{name}.pt"))
        images.append({
            "name": name, "file": f"inputs/{filename}", "format": opened.format, "pil_mode": opened.mode,
            "width": pil.width, "height": pil.height, "orientation": orientation,
            "transparent_color": list(key) if key is not None else None,
            "lossy": opened.format == "JPEG" or (opened.format == "WEBP" and "lossy" in filename),
            "refs": f"refs/{name}.pt", "presets": presets,
            "nvlabs_size": list(mmcv_rescale_size(pil.width, pil.height, NVLABS["longest_edge"],
                                                  NVLABS["shortest_edge"])),
        })

    resize_cases = []
    for source in RESIZE_SOURCES:
        if source not in decoded_by_name:
            continue
        pil = decoded_by_name[source]
        refs = {}
        sizes = RESIZE_SIZES
        if source == SWEEP_SOURCE:
            rs = np.random.RandomState(11)
            sizes = [(int(rs.randint(1, 97)), int(rs.randint(1, 73))) for _ in range(SWEEP_PAIRS)]
        for fname, fnum in RESIZE_FILTERS.items():
            for w, h in sizes:
                key = f"{fname}_{w}x{h}"
                refs[key] = tensor(np.asarray(pil.resize((w, h), Image.Resampling(fnum))))
                resize_cases.append({"source": source, "key": key, "filter": fnum, "width": w, "height": h})
        torch.save(refs, os.path.join(out_dir, "refs", f"resize_{source}.pt"))

    # cv2.resize INTER_LINEAR (what mmcv's imrescale runs) on colour and grey sources: fixed sizes, exact halves
    # and doubles (OpenCV has special paths for some), and random pairs up and down around a small image.
    opencv_cases = []
    for source in OPENCV_RESIZE_SOURCES:
        if source not in decoded_by_name:
            continue
        rgb = np.asarray(decoded_by_name[source])
        grey = bool((rgb == rgb[..., :1]).all())
        src = rgb[..., 0] if grey else rgb  # a grey image resized as OpenCV sees it, one channel
        h, w = src.shape[:2]
        rs = np.random.RandomState(13)
        sizes = RESIZE_SIZES + [(w // 2, h // 2), (2 * w, 2 * h), (3 * w, 3 * h), (w, h), (w + 1, h - 1 or 1)]
        sizes += [(int(rs.randint(1, 3 * w)), int(rs.randint(1, 3 * h))) for _ in range(OPENCV_PAIRS)]
        refs = {}
        for ow, oh in sizes:
            if ow < 1 or oh < 1:
                continue
            out = mmcv_resize(src, ow, oh)
            key = f"opencv_{ow}x{oh}"
            refs[key] = tensor(np.repeat(out[..., None], 3, 2) if grey else out)
            opencv_cases.append({"source": source, "key": key, "width": ow, "height": oh, "grey": grey})
        torch.save(refs, os.path.join(out_dir, "refs", f"opencv_{source}.pt"))

    manifest = {
        "generator": "scripts/make_image_fixtures.py",
        "opencv": cv2.__version__,
        "opencv_sources": {s: f"refs/opencv_{s}.pt" for s in OPENCV_RESIZE_SOURCES if s in decoded_by_name},
        "opencv_cases": opencv_cases,
        "reference": "transformers %s CLIPImageProcessorPil (Pillow %s backend), load_image"
                     % (__import__("transformers").__version__, Image.__version__),
        "configs": {name: f"configs/{name}.json" for name in configs},
        "nvlabs": NVLABS,
        "luts": "refs/luts.pt",
        "images": images,
        "resize_sources": {s: f"refs/resize_{s}.pt" for s in RESIZE_SOURCES if s in decoded_by_name},
        "resize_cases": resize_cases,
        "errors": errors,
    }
    with open(os.path.join(out_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote {len(images)} images, {len(resize_cases)} resize cases, {len(errors)} error files "
          f"to {out_dir} in {time.time() - started:.1f} s")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out_dir = os.path.abspath(sys.argv[1])
    if os.path.isfile(os.path.join(out_dir, MANIFEST)):
        print(f"{out_dir}: image fixtures present")
        return
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".image-fixtures-", dir=parent)
    try:
        build(tmp)
        if os.path.isdir(out_dir):  # a partial folder from an interrupted run
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
