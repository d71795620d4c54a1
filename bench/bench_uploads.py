"""What a phone photo costs to read: ``skin.uploads.load_image`` per file format, beside a plain Pillow read.

Every request starts by decoding the upload. A phone saves 12 MP (4032 x 3024):
a JPEG (Android, iPhone "Most Compatible"), a HEIC (the iPhone camera's
default), sometimes an AVIF or a WebP. The photo here is scikit-image's
astronaut (a real photograph) scaled to 12 MP with a little sensor-like noise
(Gaussian, sigma 2 levels), saved in each format at a phone's quality.

Side by side, same threads, same bytes:

* ``load_image``: what the app runs (checks, first frame, EXIF rotation, mode
  conversion, at most ``WORK_SIDE`` px; JPEGs decoded at a reduced DCT scale);
* ``plain Pillow``: ``Image.open`` → ``exif_transpose`` → ``convert("RGB")`` →
  ``thumbnail(WORK_SIDE)``: the same output size, without the reduced decode.

Target: a 12-MP photo in any accepted format is read in at most 1 s (median)
on this CPU, so that reading the upload never costs more than the models. The
HEIC here is one coded image, which libheif decodes on one thread; an iPhone
writes a grid of 512-px tiles, which it decodes on several, so this is the
slow case of the format.

    .venv/bin/python bench/bench_uploads.py [--repeats 5]

Prints a table and writes ``bench/results/uploads.json``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin.reports import dump_json  # noqa: E402
from skin.uploads import WORK_SIDE, load_image  # noqa: E402

TARGET_S = 1.0
PHONE_SIZE = (4032, 3024)
#: format → Pillow save options (a phone camera's usual quality)
FORMATS = {"JPEG": {"quality": 90}, "HEIF": {"quality": 80}, "AVIF": {"quality": 80}, "WEBP": {"quality": 85}}


def phone_photo(size=PHONE_SIZE, sigma: float = 2.0, seed: int = 0):
    """A real photograph at a phone's size, with mild sensor-like noise."""
    from PIL import Image
    from skimage import data

    base = np.asarray(Image.fromarray(data.astronaut()).resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    noisy = base + np.random.default_rng(seed).normal(0, sigma, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def plain_pillow(data: bytes):
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        rgb = ImageOps.exif_transpose(im).convert("RGB")
    rgb.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.LANCZOS)
    return rgb


def median_seconds(fn, data: bytes, repeats: int) -> float:
    fn(data)  # warm: codec libraries loaded
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(data)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, nargs=2, default=PHONE_SIZE, metavar=("W", "H"),
                        help="the photo's size (default: a phone's 12 MP)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "uploads.json"))
    args = parser.parse_args(argv)

    photo = phone_photo(tuple(args.size))
    rows = []
    for fmt, options in FORMATS.items():
        buf = io.BytesIO()
        photo.save(buf, fmt, **options)
        data = buf.getvalue()
        loaded = load_image(data)
        row = {"format": fmt, "file_kb": len(data) // 1024, "decoded_to": list(loaded.image.size),
               "load_image_s": median_seconds(load_image, data, args.repeats),
               "plain_pillow_s": median_seconds(plain_pillow, data, args.repeats)}
        row["speedup"] = row["plain_pillow_s"] / row["load_image_s"]
        rows.append(row)
        print(f"{fmt:>5} {row['file_kb']:6d} KB  load_image {row['load_image_s']:.3f} s  plain Pillow "
              f"{row['plain_pillow_s']:.3f} s  ({row['speedup']:.1f}x)", flush=True)
    worst = max(rows, key=lambda r: r["load_image_s"])
    result = {"photo": f"skimage astronaut at {args.size[0]}x{args.size[1]}, noise sigma 2",
              "work_side": WORK_SIDE, "repeats": args.repeats, "cpu_count": os.cpu_count(), "rows": rows,
              "targets": {f"every format read in <= {TARGET_S:.0f} s (slowest: {worst['format']})":
                          worst["load_image_s"] <= TARGET_S},
              "measured_with": "python bench/bench_uploads.py " + " ".join(sys.argv[1:])}
    dump_json(result, args.out)
    print(f"slowest: {worst['format']} {worst['load_image_s']:.3f} s (target <= {TARGET_S:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
