"""Safe loading of an uploaded photo: raw bytes in, upright RGB image out.

The app hands this module the *file* the user uploaded (never an image that a
web framework already decoded), so every check runs on the raw bytes:

* **Size first**: a file over :data:`MAX_UPLOAD_BYTES` is refused before it is
  read; an empty file is refused by name.
* **What is it?** The first bytes are matched against the signatures of
  documents and formats that people upload by mistake (PDF, video, ZIP/Office,
  HTML, SVG, ...), so "a PDF renamed to .jpg" is answered as such.
* **Phone formats**: HEIC/HEIF, the iPhone camera's default, is read through
  ``pillow-heif`` (libheif applies the photo's rotation); AVIF through
  Pillow's own plugin. A damaged one is refused naming its format.
* **Decompression bombs**: Pillow's :data:`PIL.Image.MAX_IMAGE_PIXELS` is set to
  :data:`MAX_PIXELS` (64 megapixels: above any phone's default output, 48-MP
  sensors save 12 MP; a 200-MP mode must be downsized first) and the header's
  size is checked against it *before* any pixel is decoded, so a 20000×20000
  PNG of a few kilobytes never allocates its 1.2 GB. Pillow's
  ``DecompressionBombWarning`` / ``DecompressionBombError`` become a
  :class:`ValueError` with the limit in the message.
* **Orientation**: ``ImageOps.exif_transpose``: phone photos are stored
  sideways with an EXIF orientation tag; the models must see them upright.
* **Modes** are converted *correctly*, not with a bare ``convert("RGB")``:
  16-bit grey (``I;16``) is scaled by 1/257 (a plain convert clips everything
  above 255 to white), 32-bit ``I`` and float ``F`` are scaled by their range,
  transparency (RGBA, LA, palette with a transparent index) is composited onto
  white (the RGB under a transparent pixel is undefined), CMYK goes through
  Pillow's CMYK→RGB, and the change is reported in ``notes``.
* **Animated** GIF / WebP / APNG: the first frame, and a note saying so.
* **Downscaling**: JPEGs are decoded with ``draft`` at a reduced DCT scale and
  every image is then shrunk to at most :data:`WORK_SIDE` px on its long side
  (the models read 224 px; quality, tone and face checks need no more), which
  bounds memory per request.

Every refusal is a :class:`UploadError` (a ``ValueError``) whose message names
the problem and the fix, worded for the person holding the phone.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

# HEIC / HEIF through libheif, as Pillow's own formats; Pillow reads AVIF itself.
register_heif_opener()

#: Largest upload accepted, in bytes (20 MB: a 48-MP phone JPEG is ~15 MB).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Largest image accepted, in pixels (width × height), checked before decoding.
MAX_PIXELS = 64_000_000
#: Smallest side accepted, in pixels: below this there is nothing to classify.
MIN_SIDE = 64
#: Longest side kept after loading (see the module docstring).
WORK_SIDE = 1024
#: Most elongated image accepted (long side / short side).
MAX_ASPECT = 8.0
#: Pillow's ``thumbnail(reducing_gap=)``: shrink by a whole factor first (box filter), then Lanczos
#: over the last 1.5-3x, so that a 12-MP HEIC / PNG / WebP is shrunk as a 12-MP JPEG already is
#: (``draft`` halves it while decoding). Pillow's default (2.0) does no first step from 12 MP to
#: 1024 px, and the Lanczos pass over all 12 MP costs more than twice as much for a result that
#: tests/test_uploads.py checks is indistinguishable (bench/bench_uploads.py has the times).
REDUCING_GAP = 1.5

# Pillow checks every ``Image.open`` against this (warning above it, error above
# twice it); the explicit pre-decode check in :func:`load_image` is the one that
# enforces the stated limit exactly.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_FIX_EXPORT = "export or screenshot it as a JPEG or PNG photo and upload that"
#: (signature, offset, what it is, how to fix it) for files that are not photos.
_SIGNATURES: tuple[tuple[bytes, int, str, str], ...] = (
    (b"%PDF", 0, "a PDF document, not a photo", _FIX_EXPORT),
    (b"ftyp", 4, "a video (MP4/MOV), not a photo", "take a still photo, or a screenshot of the video frame"),
    (b"PK\x03\x04", 0, "a ZIP archive or Office document, not a photo",
     "unzip it / export the picture and upload the photo itself"),
    (b"\x1f\x8b", 0, "a compressed (gzip) file, not a photo", "decompress it and upload the photo itself"),
    (b"<svg", 0, "an SVG drawing, not a photo", _FIX_EXPORT),
    (b"<?xml", 0, "an XML/SVG document, not a photo", _FIX_EXPORT),
    (b"<!DOCTYPE", 0, "a web page (HTML), not a photo",
     "save the image itself (right-click → Save image as), not the page"),
    (b"<html", 0, "a web page (HTML), not a photo",
     "save the image itself (right-click → Save image as), not the page"),
)


#: ISO-BMFF brands (bytes 8-12, after ``ftyp``) of still photos, decoded rather than
#: refused as video: HEIC / HEIF (iPhones, many Android phones) and AVIF.
_PHOTO_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
                 b"mif1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}


class UploadError(ValueError):
    """An upload that cannot be used; ``code`` is a short machine-readable tag."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class LoadedImage:
    """An upright RGB photo and what was done to it on the way in."""

    image: Image.Image
    #: ``"JPEG"``, ``"PNG"``, ... as Pillow identified the bytes
    format: str | None
    #: size of the file as stored (before EXIF rotation and downscaling; a HEIF as libheif turns it)
    original_size: tuple[int, int]
    #: Pillow mode of the file (``"CMYK"``, ``"I;16"``, ...)
    original_mode: str
    #: plain-language notes: conversions, rotation, first frame, downscaling
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        w, h = self.image.size
        return {"format": self.format, "original_size": list(self.original_size),
                "original_mode": self.original_mode, "width": w, "height": h, "notes": list(self.notes)}


def _photo_container(head: bytes) -> str | None:
    """``"HEIC"``, ``"HEIF"`` or ``"AVIF"`` when the first bytes open such a photo file."""
    return _PHOTO_BRANDS.get(head[8:12]) if head[4:8] == b"ftyp" else None


def _sniff(head: bytes) -> tuple[str, str] | None:
    """(what, fix) when the first bytes are a known non-photo signature."""
    if _photo_container(head):
        return None
    stripped = head.lstrip()
    for sig, offset, what, fix in _SIGNATURES:
        data = stripped if sig.startswith(b"<") else head
        window = data[offset: offset + len(sig)]
        if sig.startswith(b"<"):
            window = window.lower()
            sig = sig.lower()
        if window == sig:
            return what, fix
    return None


def read_upload(path: str | os.PathLike, *, max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of an uploaded file, refusing empty and over-size files."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UploadError("missing", "the uploaded file is gone (the upload expired): upload the photo again")
    size = os.path.getsize(path)
    if size == 0:
        raise UploadError("empty", "the file is empty (0 bytes): the upload failed or the file is broken; "
                                   "upload the photo again")
    if size > max_bytes:
        raise UploadError("too_large_file", f"the file is {_mb(size)}, more than the "
                                            f"{_mb(max_bytes)} limit: upload a smaller copy "
                                            "(e.g. the phone's 'medium' size or a JPEG export)")
    with open(path, "rb") as f:
        return f.read()


def load_image(
    data: bytes | str | os.PathLike,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    work_side: int = WORK_SIDE,
) -> LoadedImage:
    """Decode an uploaded photo safely (see the module docstring).

    ``data`` is the raw bytes or a path to them. Raises :class:`UploadError`
    (a ``ValueError``) naming the problem and the fix.
    """
    data = _checked_bytes(data, max_bytes)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = _open_header(data, max_pixels)
        w, h = im.size
        _check_dimensions(w, h, max_pixels, min_side)
        fmt, mode = im.format, im.mode
        if _truncated(fmt, data):
            raise UploadError("truncated", "the image file is truncated (only part of it arrived): "
                                           "upload it again, or re-save it on your device first")
        notes: list[str] = []
        _decode_first_frame(im, fmt, mode, (w, h), work_side, max_pixels, notes)
    rgb = _upright_rgb(im, (w, h), work_side, notes)
    return LoadedImage(image=rgb, format=fmt, original_size=(w, h), original_mode=mode, notes=notes)


def _checked_bytes(data, max_bytes: int) -> bytes:
    """The upload's bytes (read from a path if given), refusing non-bytes, empty, over-size and non-photo files."""
    if isinstance(data, (str, os.PathLike)):
        data = read_upload(data, max_bytes=max_bytes)
    if not isinstance(data, (bytes, bytearray)):
        raise UploadError("not_bytes", f"expected the bytes of an image file, got {type(data).__name__}")
    if len(data) == 0:
        raise UploadError("empty", "the file is empty (0 bytes): the upload failed or the file is broken; "
                                   "upload the photo again")
    if len(data) > max_bytes:
        raise UploadError("too_large_file", f"the file is {_mb(len(data))}, more than the "
                                            f"{_mb(max_bytes)} limit: upload a smaller copy")
    sniffed = _sniff(bytes(data[:64]))
    if sniffed:
        what, fix = sniffed
        raise UploadError("not_image", f"this file is {what}: {fix}")
    return data


def _open_header(data: bytes, max_pixels: int) -> Image.Image:
    """Pillow's lazy open of the bytes (header only, no pixels decoded), its errors turned into UploadErrors."""
    try:
        return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb(_pixels_in(str(e)), max_pixels) from e
    except UnidentifiedImageError as e:
        container = _photo_container(data[:16])
        if container:
            raise UploadError("corrupt", f"this {container} photo is damaged or incomplete and cannot be "
                                         "decoded: upload it again, or export it as JPEG and upload that") from e
        raise UploadError("not_image", "this file is not an image Pillow can read (not a JPEG, PNG, WebP, "
                                       "HEIC, AVIF, GIF, BMP or TIFF photo): upload the photo itself as "
                                       "JPEG or PNG") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise UploadError("corrupt", f"the image header is damaged ({e}): re-save the photo as JPEG "
                                     "or PNG and upload it again") from e


def _check_dimensions(w: int, h: int, max_pixels: int, min_side: int) -> None:
    """Refuse, from the header's size alone, images too large to decode, too small or too elongated to use."""
    if w * h > max_pixels:
        raise _bomb((w, h), max_pixels)
    if min(w, h) < min_side:
        raise UploadError("too_small", f"the image is too small: {w}×{h} pixels; at least {min_side} px "
                                       "on the short side is needed: upload the original photo, not a "
                                       "thumbnail")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise UploadError("aspect", f"the image is {w}×{h} pixels, too elongated (more than "
                                    f"{MAX_ASPECT:.0f}:1) to be a photo of skin or a face: crop it "
                                    "to the area of interest")


def _decode_first_frame(im: Image.Image, fmt, mode, size, work_side: int, max_pixels: int, notes: list[str]) -> None:
    """Decode the first frame's pixels (big JPEGs at a reduced DCT scale), decode errors turned into UploadErrors."""
    w, h = size
    n_frames = int(getattr(im, "n_frames", 1) or 1)
    if n_frames > 1:
        im.seek(0)
        notes.append(f"animated image ({n_frames} frames): only the first frame was used")
    try:
        if fmt == "JPEG" and max(w, h) > 2 * work_side:
            im.draft("RGB" if mode != "CMYK" else "CMYK", (work_side, work_side))
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb((w, h), max_pixels) from e
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e)
        if "truncated" in msg.lower():
            raise UploadError("truncated", "the image file is truncated (only part of it arrived): "
                                           "upload it again, or re-save it on your device first") from e
        raise UploadError("corrupt", f"the image data is damaged ({msg}): re-save the photo as JPEG or PNG "
                                     "and upload it again") from e


def _upright_rgb(im: Image.Image, size, work_side: int, notes: list[str]) -> Image.Image:
    """The decoded image rotated upright by its EXIF tag, in RGB and at most work_side px, so models see it as shot."""
    w, h = size
    orientation = im.getexif().get(0x0112, 1)
    if orientation not in (1, None):
        im = ImageOps.exif_transpose(im)
        notes.append(f"rotated upright from the camera's EXIF orientation ({orientation})")
    elif im.info.get("original_orientation", 1) not in (1, None):  # HEIF: libheif has already turned it
        notes.append(f"rotated upright from the camera's orientation ({im.info['original_orientation']})")
    rgb = to_rgb(im, notes)
    if max(rgb.size) > work_side:
        rgb.thumbnail((work_side, work_side), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
        notes.append(f"downscaled from {w}×{h} to {rgb.width}×{rgb.height} for analysis")
    return rgb


def _truncated(fmt: str | None, data: bytes) -> bool:
    """A JPEG without its end-of-image marker or a PNG without ``IEND``.

    Pillow decodes such files only when ``ImageFile.LOAD_TRUNCATED_IMAGES`` is
    off (its default, which other code may change), and then pads the missing
    rows with grey: check the tail explicitly (writers may pad a few bytes).
    """
    tail = bytes(data[-1024:])
    if fmt == "JPEG":
        return b"\xff\xd9" not in tail
    if fmt == "PNG":
        return b"IEND" not in tail
    return False


def _pixels_in(message: str) -> int | None:
    """The pixel count in Pillow's decompression-bomb message, if it has one."""
    import re

    m = re.search(r"\((\d+) pixels\)", message)
    return int(m.group(1)) if m else None


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 10 * 2**20 else f"{n / 2**20:.2f} MB"


def _bomb(size, max_pixels) -> UploadError:
    if isinstance(size, tuple):
        dims = f"{size[0]}×{size[1]} = {size[0] * size[1] / 1e6:.0f} megapixels"
    elif size:
        dims = f"{size / 1e6:.0f} megapixels"
    else:
        dims = "too many pixels"
    return UploadError("too_many_pixels", f"the image is too large to decode safely ({dims}; the limit is "
                                          f"{max_pixels / 1e6:.0f} megapixels): resize it to a normal photo size "
                                          "(e.g. 4000×3000) and upload it again")


def to_rgb(im: Image.Image, notes: list[str] | None = None) -> Image.Image:
    """Any Pillow mode → 8-bit RGB without clipping or garbage under transparency."""
    notes = notes if notes is not None else []
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
            notes.append("16-bit greyscale scaled to 8 bits")
        else:
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            if mode == "F" and hi <= 1.0 and lo >= 0.0:
                arr = arr * 255.0
            elif hi > 255.0:
                arr = arr / (257.0 if hi <= 65535.0 else hi / 255.0)
            notes.append(f"{'32-bit' if mode == 'I' else 'floating-point'} greyscale scaled to 8 bits")
        grey = Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8), "L")
        notes.append("greyscale photo: colour-based checks (skin tone) cannot be made")
        return grey.convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info) \
        or (mode in ("RGB", "L") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("transparent areas were filled with white")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        if mode in ("LA", "La"):
            notes.append("greyscale photo: colour-based checks (skin tone) cannot be made")
        return out
    if mode == "CMYK":
        notes.append("converted from CMYK (print colours) to RGB; colours may be slightly off")
    elif mode in ("L", "1"):
        notes.append("greyscale photo: colour-based checks (skin tone) cannot be made")
    elif mode == "P":
        notes.append("palette (indexed-colour) image converted to RGB")
    else:
        notes.append(f"converted from {mode} to RGB")
    return im.convert("RGB")

__all__ = ["MAX_PIXELS", "MAX_UPLOAD_BYTES", "MIN_SIDE", "WORK_SIDE", "LoadedImage", "UploadError", "load_image",
           "read_upload", "to_rgb"]
