"""A corpus of awkward and broken uploads, generated in memory (no files in git).

Each :class:`BadUpload` is one kind of file people really upload to a photo
app: documents renamed to ``.jpg``, broken transfers, odd colour modes,
decompression bombs. ``expect`` says what the app must do with it:

* ``"error"``: refuse it; the message must contain ``keyword`` (it names the
  problem) and the server must keep serving.
* ``"ok"``: accept it after conversion; the response's image notes contain
  ``keyword`` (what was done), and the photo is analysed.
* ``"abstain"``: accept the file, but the named task abstains with a reason
  containing ``keyword`` (e.g. no face for the age model).

Generated with Pillow and ``zlib`` only; the whole corpus takes well under a
second and a few MB of memory (the bomb is built from its compressed stream,
never decoded).

    python -m tests.bad_uploads OUT_DIR     # write the corpus to a folder
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class BadUpload:
    name: str
    filename: str
    data: bytes
    expect: str  # error | ok | abstain
    keyword: str
    task: str | None = None  # for expect == "abstain"
    description: str = ""


def skin_photo(size: tuple[int, int] = (320, 240), seed: int = 0, tone=(224, 172, 150)) -> Image.Image:
    """A synthetic close-up: skin-coloured, textured, with a darker central lesion."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = np.array(tone, dtype=np.float32)[None, None, :] * np.ones((h, w, 1), np.float32)
    base += rng.normal(0, 9, (h, w, 1)).astype(np.float32)  # pores / texture, same on all channels
    base += 6 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 9.0)[..., None]
    r = np.hypot(xx - w / 2, yy - h / 2) / (0.18 * min(w, h))
    lesion = np.clip(1.2 - r, 0, 1)[..., None]
    base = base * (1 - 0.55 * lesion) + lesion * np.array([60, 35, 25], np.float32) * 0.55
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def decompression_bomb(side: int = 20000) -> bytes:
    """A valid 1-bit ``side``×``side`` PNG of a few tens of kB (1.2 GB as RGB)."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 1000) for _ in range(side // 1000)]
    parts.append(comp.compress(row * (side % 1000)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))


def sideways_photo(fmt: str = "JPEG") -> bytes:
    """A landscape photo stored sideways: pixels 240 wide × 320 high, EXIF orientation 6.

    Upright (after ``exif_transpose``) it is 320×240 with a **red top edge**;
    stored, the red band is on the left-hand side of the pixel grid. ``fmt``
    ``"HEIF"`` writes it as an iPhone does (pillow-heif turns the EXIF tag into
    the file's rotation box), ``"AVIF"`` through Pillow's own plugin.
    """
    upright = skin_photo((320, 240), seed=3)
    arr = np.asarray(upright).copy()
    arr[:24] = (255, 0, 0)
    upright = Image.fromarray(arr)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6: the viewer rotates 90° CW back
    exif = Image.Exif()
    exif[0x0112] = 6
    if fmt == "HEIF":  # the HEIF writer (skin.uploads registers the same plugin for reading)
        from pillow_heif import register_heif_opener

        register_heif_opener()
    return _encode(stored, fmt, quality=92, exif=exif.tobytes())


def png16() -> bytes:
    """A 16-bit greyscale PNG, mid-grey to light grey (naive convert → all white)."""
    ramp = np.linspace(20000, 50000, 256, dtype=np.float64)
    arr = np.tile(ramp, (192, 1)) + np.random.default_rng(1).normal(0, 800, (192, 256))
    return _encode(Image.fromarray(np.clip(arr, 0, 65535).astype(np.uint16), "I;16"), "PNG")


def animated_gif() -> bytes:
    frames = [skin_photo((160, 120), seed=s).convert("P", palette=Image.Palette.ADAPTIVE) for s in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def noise_png(min_bytes: int) -> bytes:
    """A valid PNG of random pixels at least ``min_bytes`` long (incompressible)."""
    side = int(np.ceil(np.sqrt(min_bytes / 3.0))) + 8
    arr = np.random.default_rng(2).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return _encode(Image.fromarray(arr), "PNG", compress_level=0)


MINIMAL_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>"
               b"endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def corpus(max_upload_bytes: int = 20 * 1024 * 1024) -> list[BadUpload]:
    """All kinds, in a fixed order. ``max_upload_bytes`` sizes the over-size file."""
    good = skin_photo()
    jpeg = _encode(good, "JPEG", quality=90)
    heic = sideways_photo("HEIF")
    png = _encode(good, "PNG")
    rgba = good.convert("RGBA")
    alpha = np.full((good.height, good.width), 255, np.uint8)
    alpha[:, :40] = 0
    rgba.putalpha(Image.fromarray(alpha))
    return [
        BadUpload("not_image", "photo.jpg", b"this is a text file, not a photo\n" * 20, "error", "not an image",
                  description="plain text named .jpg"),
        BadUpload("truncated_jpeg", "cut.jpg", jpeg[: len(jpeg) // 2], "error", "truncated",
                  description="the first half of a JPEG"),
        BadUpload("truncated_png", "cut.png", png[: len(png) // 2], "error", "truncated",
                  description="the first half of a PNG"),
        BadUpload("empty", "empty.jpg", b"", "error", "empty", description="0 bytes"),
        BadUpload("one_pixel", "dot.png", _encode(Image.new("RGB", (1, 1), (200, 150, 130)), "PNG"), "error",
                  "too small", description="1×1 pixel"),
        BadUpload("thumbnail", "thumb.jpg", _encode(good.resize((40, 30)), "JPEG"), "error", "too small",
                  description="40×30 thumbnail"),
        BadUpload("elongated", "strip.png", _encode(good.resize((1200, 100)), "PNG"), "error", "elongated",
                  description="1200×100 strip"),
        BadUpload("decompression_bomb", "bomb.png", decompression_bomb(20000), "error", "megapixels",
                  description="20000×20000 1-bit PNG"),
        BadUpload("pdf_renamed", "scan.jpg", MINIMAL_PDF, "error", "PDF", description="a PDF named .jpg"),
        BadUpload("html_renamed", "image.jpg", b"<!DOCTYPE html><html><body><img src=x></body></html>", "error",
                  "web page", description="a saved web page named .jpg"),
        BadUpload("heic_damaged", "IMG_0001.HEIC", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
                  "error", "HEIC", description="an iPhone HEIC whose data is missing"),
        BadUpload("very_large_file", "huge.png", noise_png(max_upload_bytes + 1024), "error", "limit",
                  description=f"a PNG over the {max_upload_bytes // 2**20} MB limit"),
        BadUpload("cmyk_jpeg", "print.jpg", _encode(good.convert("CMYK"), "JPEG", quality=90), "ok", "CMYK",
                  description="CMYK JPEG"),
        BadUpload("png_16bit", "scan16.png", png16(), "ok", "16-bit", description="16-bit greyscale PNG"),
        BadUpload("rgba_png", "cutout.png", _encode(rgba, "PNG"), "ok", "transparent",
                  description="RGBA PNG with transparent area"),
        BadUpload("grayscale_jpeg", "bw.jpg", _encode(good.convert("L"), "JPEG"), "ok", "greyscale",
                  description="8-bit greyscale JPEG"),
        BadUpload("palette_png", "indexed.png", _encode(good.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
                  "ok", "palette", description="palette (indexed) PNG"),
        BadUpload("exif_rotated", "phone.jpg", sideways_photo(), "ok", "rotated upright",
                  description="EXIF orientation 6 (stored sideways)"),
        BadUpload("truncated_heic", "IMG_0003.HEIC", heic[: len(heic) * 2 // 3], "error", "damaged",
                  description="the first two thirds of an iPhone-style HEIC"),
        BadUpload("heic_photo", "IMG_0002.HEIC", heic, "ok", "rotated upright",
                  description="an iPhone-style HEIC photo, stored sideways with its rotation"),
        BadUpload("avif_photo", "photo.avif", sideways_photo("AVIF"), "ok", "rotated upright",
                  description="an AVIF photo, stored sideways with EXIF orientation 6"),
        BadUpload("animated_gif", "anim.gif", animated_gif(), "ok", "first frame", description="3-frame GIF"),
        BadUpload("no_face", "arm.jpg", jpeg, "abstain", "no face", task="age",
                  description="a skin close-up given to the face (age) model"),
    ]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tests.bad_uploads OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for item in corpus():
        (out / f"{item.name}__{item.filename}").write_bytes(item.data)
        print(f"{item.name:20s} {len(item.data):>10d} B  expect {item.expect}: {item.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
