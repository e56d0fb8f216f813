"""SyntheticShapes: a procedurally generated image benchmark and its caption generator (deterministic by seed).

Every image shows one object with three attributes, a colour, a pattern and a shape, e.g. a
"red striped circle", drawn with PIL (4x supersampled) at a random position, size and rotation, with
colour jitter, on a random muted background (dark or light, with a gradient), plus pixel noise.

* ``render(attrs, rng)`` draws one image, ``caption(attrs, rng)`` describes it in a sentence: colour, pattern
  and shape always (in varying word order and phrasing), size and background sometimes, within one of a
  dozen templates. ``VOCABULARY`` lists the attribute words.
* The benchmark's 32 classes are CLASS_COLOURS x CLASS_SHAPES x CLASS_PATTERNS, split by shape: the
  *base* classes are the circles and squares (BASE_SHAPES), the *new* ones the triangles and stars; labels
  0-15 are the base classes and 16-31 the new ones, so the standard split (first ceil(n/2) labels = base)
  gives 4 colours x 2 patterns x 2 shapes on each side. New classes share every colour and pattern with the
  base classes but none of their shapes: a prompt fit to the base classes only ever had to tell circles from
  squares (the base-to-new trade-off of the demo, README "Two commands").
* ``pretraining_attributes(rng)`` draws the attributes of a pretraining image from the larger vocabulary
  (8 colours, 6 shapes, 3 patterns, 3 sizes) *without* 8 held-out colour-shape pairs of the benchmark
  (colour i and shape j with i + j odd: 4 pairs among the base classes, 4 among the new), so the CLIP has
  never seen 16 of the 32 classes, neither as image nor as name, and classifies them only through their
  attributes.
* The benchmark is a domain of close-ups: every object is large (BENCHMARK_SIZE). Pretraining captions
  name a large object's size most of the time (SIZE_MENTION), the zero-shot template "a photo of a {}."
  does not; that context is what prompt tuning can learn here (as "a centered satellite photo of" for
  EuroSAT with real CLIP).
* ``write_benchmark(root)`` writes ROOT/synthetic_shapes/images/<class>/NNNN.png and
  split_zhou_SyntheticShapes.json in the CoOp split format (datasets/synthetic_shapes.py reads it and
  writes it on first use).

Library code of the dataset and of the demo CLIP's pretraining (tools/pretrain_clip.py); no torch.
``python tools/synthetic.py`` writes the benchmark or a preview grid from the command line.
"""
import colorsys
import json
import math
import os
import random

import numpy as np
from PIL import Image, ImageDraw

from meta.runs import write_text_atomic

IMAGE_SIZE = 32
SUPERSAMPLE = 4  # drawn at 4x and box-filtered down (anti-aliasing)

COLOURS = {  # name -> RGB
    "red": (215, 35, 35), "green": (35, 165, 60), "blue": (40, 85, 225), "yellow": (240, 215, 30),
    "orange": (245, 130, 20), "purple": (135, 50, 190), "pink": (245, 125, 185), "brown": (125, 75, 35),
}
SHAPES = ["circle", "square", "triangle", "star", "cross", "heart"]
PATTERNS = ["plain", "striped", "dotted"]
SIZES = ["small", "large"]  # and None: medium, never named
# how often a caption names the size: close-ups are usually called large, as web captions call out close-ups
SIZE_MENTION = {"small": 0.5, "large": 0.85}
BACKGROUNDS = ["dark", "light"]

CLASS_COLOURS = ["red", "green", "blue", "yellow"]
CLASS_SHAPES = ["circle", "square", "triangle", "star"]
CLASS_PATTERNS = ["plain", "striped"]
BASE_SHAPES = ("circle", "square")  # the base classes' shapes; the new classes are the triangles and stars

TEMPLATES = [
    "a photo of a {}.", "a {}.", "a picture of a {}.", "an image of a {}.", "a photo of the {}.",
    "a drawing of a {}.", "this is a photo of a {}.", "there is a {} in the picture.", "a close-up photo of a {}.",
    "a rendering of a {}.", "a {} on a {bg} background.", "a photo of a {} on a {bg} background.",
    "a picture of a {} in front of a {bg} background.",
]
PATTERN_PHRASES = {"plain": "no pattern", "striped": "stripes", "dotted": "dots"}
# the attribute words captions use (besides the templates' own words)
VOCABULARY = sorted(set(COLOURS) | set(SHAPES) | set(PATTERNS) | set(SIZES) | set(BACKGROUNDS)
                    | set(" ".join(PATTERN_PHRASES.values()).split()) | {"background", "with"})

DATASET_DIR = "synthetic_shapes"
SPLIT_FILE = "split_zhou_SyntheticShapes.json"
BENCHMARK_SEED = 2024
# the benchmark's domain: close-ups (large objects), which the zero-shot template "a photo of a {}." does not say
BENCHMARK_SIZE = "large"
# images per class in the benchmark: train (few-shot pool), val, test
DEFAULT_COUNTS = (32, 8, 30)


def is_held_out_pair(colour, shape):
    """A benchmark colour-shape pair the demo CLIP's pretraining never shows (colour i, shape j, i + j odd)."""
    return (colour in CLASS_COLOURS and shape in CLASS_SHAPES
            and (CLASS_COLOURS.index(colour) + CLASS_SHAPES.index(shape)) % 2 == 1)


def class_name(colour, pattern, shape):
    return f"{colour} {pattern} {shape}"


def benchmark_classes():
    """[(colour, pattern, shape)] in label order: the 16 base classes (BASE_SHAPES), then the 16 new ones."""
    combos = [(c, p, s) for c in CLASS_COLOURS for s in CLASS_SHAPES for p in CLASS_PATTERNS]
    return [x for x in combos if x[2] in BASE_SHAPES] + [x for x in combos if x[2] not in BASE_SHAPES]


# ----------------------------------------------------------------------------------------------
# Rendering

def _shape_polygon(shape, cx, cy, r, angle):
    """Outline points (render pixels) of ``shape`` with circumradius ``r`` centred at (cx, cy)."""
    if shape == "circle":
        pts = [(math.cos(t), math.sin(t)) for t in np.linspace(0, 2 * math.pi, 48, endpoint=False)]
    elif shape == "square":
        s = 0.78
        pts = [(-s, -s), (s, -s), (s, s), (-s, s)]
    elif shape == "triangle":
        pts = [(math.cos(t), math.sin(t) + 0.15) for t in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    elif shape == "star":
        pts = [((1.0 if k % 2 == 0 else 0.42) * math.cos(-math.pi / 2 + k * math.pi / 5),
                (1.0 if k % 2 == 0 else 0.42) * math.sin(-math.pi / 2 + k * math.pi / 5) + 0.08) for k in range(10)]
    elif shape == "cross":
        a, b = 0.3, 0.9
        pts = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a),
               (-a, -a)]
    elif shape == "heart":
        pts = []
        for t in np.linspace(0, 2 * math.pi, 48, endpoint=False):
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x / 17, -y / 17 + 0.05))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in pts]


_GRIDS = {}


def _grid(n):
    """(yy, xx) pixel coordinates of an n x n image (cached)."""
    if n not in _GRIDS:
        _GRIDS[n] = np.mgrid[0:n, 0:n].astype(np.float32)
    return _GRIDS[n]


def _downsample(a, factor):
    """Box-filter a 2-D array by an integer factor."""
    n = a.shape[0] // factor
    return a.reshape(n, factor, n, factor).mean(axis=(1, 3))


def _pattern_mask(pattern, n, rng):
    """1 where the object shows its colour, 0 where it shows the pattern's dark marks (render pixels)."""
    if pattern == "plain":
        return None
    period = SUPERSAMPLE * rng.uniform(3.6, 5.0)
    yy, xx = _grid(n)
    phase = rng.uniform(0, period)
    if pattern == "striped":
        theta = rng.choice([0.0, math.pi / 2, math.pi / 4, -math.pi / 4]) + rng.uniform(-0.15, 0.15)
        u = xx * math.cos(theta) + yy * math.sin(theta) + phase
        return ((u % period) < period / 2).astype(np.float32)
    if pattern == "dotted":
        u, v = (xx + phase) % period - period / 2, (yy + phase) % period - period / 2
        return ((u * u + v * v) > (period * 0.27) ** 2).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r}")


def render(attrs, rng, size=IMAGE_SIZE):
    """A PIL RGB image of one object; ``attrs``: colour, shape, pattern, size ('small'/'large'/None), background.

    ``rng`` is a ``random.Random``; everything random about the image comes from it. The object's outline
    and pattern are drawn at SUPERSAMPLE x the size and box-filtered down (anti-aliased coverage)."""
    n = size * SUPERSAMPLE
    # background: a muted colour, dark or light, with a linear gradient
    hue, sat = rng.random(), rng.uniform(0.0, 0.3)
    val = rng.uniform(0.12, 0.38) if attrs["background"] == "dark" else rng.uniform(0.68, 0.95)
    bg = np.array(colorsys.hsv_to_rgb(hue, sat, val), np.float32) * 255
    gx, gy = rng.uniform(-1, 1), rng.uniform(-1, 1)
    yy, xx = _grid(size) / size - 0.5
    img = bg[None, None, :] + (rng.uniform(10, 40) * (gx * xx + gy * yy))[..., None]

    # object: colour with jitter, size class, position inside the frame, rotation
    lo, hi = {"small": (0.24, 0.3), None: (0.31, 0.38), "large": (0.39, 0.46)}[attrs.get("size")]  # None: medium
    r = rng.uniform(lo, hi) * n
    cx, cy = rng.uniform(r * 0.9, n - r * 0.9), rng.uniform(r * 0.9, n - r * 0.9)
    angle = rng.uniform(-0.35, 0.35)
    mask_img = Image.new("L", (n, n), 0)
    ImageDraw.Draw(mask_img).polygon(_shape_polygon(attrs["shape"], cx, cy, r, angle), fill=255)
    mask = np.asarray(mask_img.resize((size, size), Image.BOX), np.float32)[..., None] / 255
    colour = np.array(COLOURS[attrs["colour"]], np.float32) + np.array([rng.uniform(-18, 18) for _ in range(3)])
    colour = np.clip(colour * rng.uniform(0.85, 1.1), 0, 255)
    marks = _pattern_mask(attrs["pattern"], n, rng)
    if marks is None:
        fg = colour[None, None, :]
    else:
        marks = _downsample(marks, SUPERSAMPLE)[..., None]
        fg = colour * (marks + (1 - marks) * rng.uniform(0.12, 0.3))
    img = img * (1 - mask) + fg * mask

    noise_rng = np.random.default_rng(rng.getrandbits(32))
    img = img + noise_rng.normal(0, rng.uniform(3, 14), img.shape)
    return Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))


# ----------------------------------------------------------------------------------------------
# Attributes and captions

def _article(text):
    return text.replace(" a a", " an a").replace(" a o", " an o").replace(" a i", " an i") \
        .replace(" a e", " an e").replace(" a u", " an u")


def caption(attrs, rng):
    """One sentence describing ``attrs`` (colour, pattern and shape always; size and background sometimes)."""
    c, p, s = attrs["colour"], attrs["pattern"], attrs["shape"]
    form = rng.random()
    if form < 0.65:
        desc = f"{c} {p} {s}"
    elif form < 0.8:
        desc = f"{p} {c} {s}"
    else:
        desc = f"{c} {s} with {PATTERN_PHRASES[p]}"
    if attrs.get("size") and rng.random() < SIZE_MENTION[attrs["size"]]:
        desc = f"{attrs['size']} {desc}"
    template = rng.choice(TEMPLATES)
    return _article(" " + template.format(desc, bg=attrs["background"]))[1:]


def random_attributes(rng, colours=tuple(COLOURS), shapes=tuple(SHAPES), patterns=tuple(PATTERNS),
                      sizes=(*SIZES, None)):
    return {"colour": rng.choice(colours), "shape": rng.choice(shapes), "pattern": rng.choice(patterns),
            "size": rng.choice(sizes), "background": rng.choice(BACKGROUNDS)}


def pretraining_attributes(rng):
    """Attributes from the whole vocabulary, never a held-out colour-shape pair of the benchmark."""
    while True:
        attrs = random_attributes(rng)
        if not is_held_out_pair(attrs["colour"], attrs["shape"]):
            return attrs


# ----------------------------------------------------------------------------------------------
# The benchmark on disk

def is_current_benchmark(root):
    """True if ROOT holds a complete benchmark with this version's base/new split (a copy written before the
    split by shape has the old labels: it is written anew)."""
    try:
        with open(os.path.join(root, DATASET_DIR, SPLIT_FILE)) as f:
            generator = json.load(f).get("generator", {})
    except (OSError, ValueError):
        return False
    return generator.get("base_shapes") == list(BASE_SHAPES)


def write_benchmark(root, counts=DEFAULT_COUNTS, seed=BENCHMARK_SEED, size=IMAGE_SIZE):
    """ROOT/synthetic_shapes/{images/<class>/NNNN.png, split_zhou_SyntheticShapes.json}; returns its folder.

    The split file is written last, so its presence means the benchmark is complete."""
    base = os.path.join(root, DATASET_DIR)
    split = {"train": [], "val": [], "test": []}
    n_train, n_val, n_test = counts
    for label, (c, p, s) in enumerate(benchmark_classes()):
        name = class_name(c, p, s)
        folder = name.replace(" ", "_")
        os.makedirs(os.path.join(base, "images", folder), exist_ok=True)
        rng = random.Random(f"{seed}-{name}")
        for i in range(n_train + n_val + n_test):
            attrs = random_attributes(rng, colours=[c], shapes=[s], patterns=[p], sizes=[BENCHMARK_SIZE])
            rel = f"{folder}/{i:04d}.png"
            render(attrs, rng, size).save(os.path.join(base, "images", rel))
            part = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            split[part].append([rel, label, name])
    generator = {"seed": seed, "counts": list(counts), "size": size, "base_shapes": list(BASE_SHAPES)}
    write_text_atomic(os.path.join(base, SPLIT_FILE), json.dumps({"generator": generator, **split}, indent=1))
    return base
