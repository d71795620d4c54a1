"""The photo-type corpus: real images of each type, split so that nothing seen in training is tested.

* ``dermoscopy``: HAM10000; ``clinical``: DermNet and PAD-UFES-20; ``face``:
  UTKFace. Train and test images come from the datasets' own builders' train
  and test splits (:meth:`SkinImageBuilder.split_records`), so lesions
  (HAM10000), patients (PAD-UFES-20) and near-duplicate clusters (DermNet) never
  span the two.
* ``out_of_scope``: real photographs that ship inside packages (scikit-image,
  scikit-learn, gradio: :data:`REAL_SOURCES`, random crops and resizes of each) and generated
  pictures (:data:`GENERATORS`: noise, flat colours, gradients, text documents,
  charts, screenshots). Test pictures come from whole source photographs never
  used in training (:data:`TEST_SOURCES`) and from generator seeds never used in
  training. ``skimage.data.astronaut`` is left out on purpose: it is a portrait,
  a face photo, not an out-of-scope picture (and so is matplotlib's ``grace_hopper``).

Items are drawn lazily (:meth:`CorpusItem.load`): nothing is copied anywhere.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Real photographs shipped inside packages: name → loader of an HxW(x3) uint8 array.
REAL_SOURCES: dict[str, Callable[[], np.ndarray]] = {
    **{f"skimage.{n}": (lambda n=n: _skimage(n))
       for n in ("camera", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                 "coins", "page", "moon", "text", "brick", "grass", "gravel", "cell", "clock", "colorwheel")},
    "skimage.motorcycle": lambda: _skimage("stereo_motorcycle")[0],
    "sklearn.china": lambda: _sklearn_sample(0),
    "sklearn.flower": lambda: _sklearn_sample(1),
    **{f"gradio.{n}": (lambda path=path: _gradio_photo(path))
       for n, path in (("cheetah", "media_assets/images/cheetah.jpg"), ("tower", "media_assets/images/tower.jpg"),
                       ("groot", "media_assets/images/groot.jpeg"), ("cheetah2", "test_data/cheetah2.jpg"))},
}
#: Source photographs held out whole for the test part.
TEST_SOURCES = ("skimage.rocket", "skimage.coffee", "skimage.gravel", "skimage.immunohistochemistry",
                "sklearn.flower", "skimage.clock")
#: Generator seeds at or above this value are test pictures; training uses seeds below it.
TEST_SEED_BASE = 100_000


def _skimage(name: str):
    import skimage.data

    return getattr(skimage.data, name)()


def _gradio_photo(relpath: str) -> np.ndarray:
    """A photograph shipped inside gradio (the app's UI, so always installed)."""
    import gradio

    with Image.open(Path(gradio.__file__).parent / relpath) as im:
        return np.asarray(im.convert("RGB"))


def _sklearn_sample(i: int) -> np.ndarray:
    from sklearn.datasets import load_sample_images

    return load_sample_images().images[i]


@dataclass(frozen=True)
class CorpusItem:
    """One picture: its photo type, split, source (dataset, photograph or generator) and how to draw it."""

    label: str
    split: str
    source: str
    path: str | None = None
    seed: int = 0

    def load(self) -> Image.Image:
        if self.path is not None:
            with Image.open(self.path) as im:
                return im.convert("RGB")
        if self.source in GENERATORS:
            return GENERATORS[self.source](random.Random(self.seed)).convert("RGB")
        return random_view(_real(self.source), random.Random(self.seed))


_REAL_CACHE: dict[str, Image.Image] = {}


def _real(name: str) -> Image.Image:
    if name not in _REAL_CACHE:
        a = np.asarray(REAL_SOURCES[name]())
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        _REAL_CACHE[name] = Image.fromarray(a.astype(np.uint8)).convert("RGB")
    return _REAL_CACHE[name]


def random_view(im: Image.Image, rng: random.Random) -> Image.Image:
    """A random crop (30-100 % of each side) of ``im``, resized to a long side of 160-640 px."""
    w, h = im.size
    cw, ch = max(16, int(w * rng.uniform(0.3, 1.0))), max(16, int(h * rng.uniform(0.3, 1.0)))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    crop = im.crop((x, y, x + cw, y + ch))
    side = rng.randint(160, 640)
    scale = side / max(cw, ch)
    return crop.resize((max(8, int(cw * scale)), max(8, int(ch * scale))), Image.BILINEAR)


# ----------------------------------------------------------------- generated out-of-scope pictures


def _size(rng: random.Random) -> tuple[int, int]:
    return rng.randint(160, 640), rng.randint(160, 640)


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(0, 255) for _ in range(3))


def gen_noise(rng: random.Random) -> Image.Image:
    """Gaussian, uniform or salt-and-pepper noise, grey or coloured, around a random colour."""
    w, h = _size(rng)
    g = np.random.default_rng(rng.randrange(2**32))
    kind = rng.choice(["gauss", "uniform", "salt"])
    if kind == "gauss":
        a = g.normal(_colour(rng), rng.uniform(5, 80), (h, w, 3))
    elif kind == "uniform":
        a = g.uniform(0, 255, (h, w, 1 if rng.random() < 0.3 else 3)) * np.ones((1, 1, 3))
    else:
        a = np.where(g.random((h, w, 1)) < rng.uniform(0.05, 0.5), 255.0, 0.0) * np.ones((1, 1, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def gen_flat(rng: random.Random) -> Image.Image:
    """One flat colour (sometimes with a little noise)."""
    a = np.ones((*_size(rng)[::-1], 3)) * _colour(rng)
    if rng.random() < 0.5:
        a += np.random.default_rng(rng.randrange(2**32)).normal(0, 3, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def gen_gradient(rng: random.Random) -> Image.Image:
    """A linear or radial gradient between two random colours."""
    w, h = _size(rng)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
    else:
        t = np.hypot(xx - rng.random(), yy - rng.random())
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    a, b = np.array(_colour(rng)), np.array(_colour(rng))
    return Image.fromarray((a + (b - a) * t[..., None]).astype(np.uint8))


_WORDS = ("the of and to in is for with on report table figure data results patient summary page total "
          "invoice date number account section method analysis value example text document review").split()


def _text_line(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize()


def gen_document(rng: random.Random) -> Image.Image:
    """A rendered text page: a title and paragraphs of words, dark ink on light paper."""
    w = rng.randint(300, 640)
    h = int(w * rng.uniform(1.1, 1.5))
    paper = tuple(rng.randint(225, 255) for _ in range(3))
    im = Image.new("RGB", (w, h), paper)
    d = ImageDraw.Draw(im)
    size = rng.randint(10, 18)
    font, title = ImageFont.load_default(size=size), ImageFont.load_default(size=int(size * 1.6))
    ink = tuple(rng.randint(0, 60) for _ in range(3))
    y = rng.randint(15, 40)
    d.text((20, y), _text_line(rng, rng.randint(2, 5)), fill=ink, font=title)
    y += int(size * 3)
    while y < h - 30:
        if rng.random() < 0.15:
            y += size
            continue
        d.text((20, y), _text_line(rng, max(2, (w - 40) // (size * 4))), fill=ink, font=font)
        y += int(size * 1.5)
    return im


def gen_chart(rng: random.Random) -> Image.Image:
    """A matplotlib chart (bars, lines, scatter or pie) with a title and axes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    g = np.random.default_rng(rng.randrange(2**32))
    fig = Figure(figsize=(rng.uniform(3, 6), rng.uniform(2.5, 5)), dpi=80)
    ax = fig.add_subplot()
    kind = rng.choice(["bar", "line", "scatter", "pie"])
    n = rng.randint(3, 12)
    if kind == "bar":
        ax.bar(range(n), g.uniform(1, 10, n), color=[c / 255 for c in _colour(rng)])
    elif kind == "line":
        for _ in range(rng.randint(1, 4)):
            ax.plot(np.cumsum(g.normal(0, 1, n * 5)))
    elif kind == "scatter":
        ax.scatter(g.normal(0, 1, n * 10), g.normal(0, 1, n * 10), s=8)
    else:
        ax.pie(g.uniform(1, 5, min(n, 7)))
    ax.set_title(_text_line(rng, rng.randint(2, 4)))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def gen_screenshot(rng: random.Random) -> Image.Image:
    """A fake app window: title bar, sidebar, buttons, text lines and boxes."""
    w, h = rng.randint(320, 640), rng.randint(240, 480)
    dark = rng.random() < 0.3
    bg = (rng.randint(20, 50),) * 3 if dark else (rng.randint(235, 255),) * 3
    fg = (220, 220, 220) if dark else (30, 30, 30)
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    accent = _colour(rng)
    bar = rng.randint(20, 36)
    d.rectangle((0, 0, w, bar), fill=accent)
    font = ImageFont.load_default(size=rng.randint(10, 14))
    d.text((10, bar // 4), _text_line(rng, 3), fill=(255, 255, 255), font=font)
    side = rng.randint(0, w // 4)
    if side:
        d.rectangle((0, bar, side, h), fill=tuple(max(0, c - 20) for c in bg))
        for i in range(rng.randint(3, 10)):
            d.text((8, bar + 12 + i * 22), _text_line(rng, 1), fill=fg, font=font)
    y = bar + 15
    while y < h - 30:
        r = rng.random()
        if r < 0.2:
            d.rounded_rectangle((side + 15, y, side + 15 + rng.randint(60, 140), y + 24), radius=5, fill=accent)
            y += 34
        elif r < 0.35:
            d.rectangle((side + 15, y, w - 15, y + rng.randint(30, 90)), outline=fg)
            y += 100
        else:
            d.text((side + 15, y), _text_line(rng, rng.randint(3, 8)), fill=fg, font=font)
            y += 20
    return im


GENERATORS: dict[str, Callable[[random.Random], Image.Image]] = {
    "generated.noise": gen_noise, "generated.flat": gen_flat, "generated.gradient": gen_gradient,
    "generated.document": gen_document, "generated.chart": gen_chart, "generated.screenshot": gen_screenshot,
}


# ----------------------------------------------------------------- the corpus


def _dataset_items(name: str, folder: str, label: str, n_train: int, n_test: int, seed: int) -> list[CorpusItem]:
    """``n_train`` / ``n_test`` images drawn at random from the builder's train / test split."""
    import warnings

    from skin.data import get_builder

    with warnings.catch_warnings():  # scikit-learn's note that a small class has few groups (PAD-UFES-20)
        warnings.simplefilter("ignore", UserWarning)
        by_split, _ = get_builder(name, folder).split_records()
    rng = random.Random(f"{seed}:{name}")
    items = []
    for split, n in (("train", n_train), ("test", n_test)):
        records = sorted(by_split[split], key=lambda r: r["image"])
        for r in rng.sample(records, min(n, len(records))):
            items.append(CorpusItem(label=label, split=split, source=name, path=r["image"]))
    return items


def skin_items(data_root: str, n_train: int, n_test: int, seed: int = 0) -> list[CorpusItem]:
    """Dermoscopy, clinical and face images from ``data_root`` (holding ``ham10000/``, ``dermnet/``,
    ``pad_ufes20/``, ``utkface/``); clinical takes every PAD-UFES-20 image and fills up with DermNet."""
    def folder(sub: str) -> str:
        path = os.path.join(data_root, sub)
        if not os.path.isdir(path):
            raise ValueError(f"{path} not found: --data-root must hold ham10000/, dermnet/, pad_ufes20/ and "
                             "utkface/ as ../shared/data does (see its README.md)")
        return path

    items = _dataset_items("ham10000", folder("ham10000"), "dermoscopy", n_train, n_test, seed)
    items += _dataset_items("utkface", folder("utkface"), "face", n_train, n_test, seed)
    pad = _dataset_items("pad_ufes20", folder("pad_ufes20"), "clinical", n_train, n_test, seed)
    pad_n = {s: sum(i.split == s for i in pad) for s in ("train", "test")}
    items += pad + _dataset_items("dermnet", folder("dermnet"), "clinical", n_train - pad_n["train"],
                                  n_test - pad_n["test"], seed)
    return items


def out_of_scope_items(views_per_source: int, per_generator_train: int, per_generator_test: int,
                       seed: int = 0) -> list[CorpusItem]:
    """Random views of the package photographs and generated pictures, test parts held out whole."""
    items = []
    for i, name in enumerate(REAL_SOURCES):
        split = "test" if name in TEST_SOURCES else "train"
        items += [CorpusItem("out_of_scope", split, name, seed=seed * 1_000_003 + i * 10_007 + k)
                  for k in range(views_per_source)]
    for name in GENERATORS:
        items += [CorpusItem("out_of_scope", "train", name, seed=seed * 1_000 + k) for k in range(per_generator_train)]
        items += [CorpusItem("out_of_scope", "test", name, seed=TEST_SEED_BASE + seed * 1_000 + k)
                  for k in range(per_generator_test)]
    return items
