#!/usr/bin/env python
"""The SyntheticShapes world (datasets/synthetic_world.py) from the command line.

    python tools/synthetic.py --root DATA              # the benchmark, as the dataset writes it on first use
    python tools/synthetic.py --root DATA --if-needed  # only if DATA holds no complete copy of this version
    python tools/synthetic.py --preview grid.png       # a grid of pretraining images, captions on stdout
"""
import argparse
import math
import os
import random
import sys

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasets.synthetic_world import (BENCHMARK_SEED, DEFAULT_COUNTS, IMAGE_SIZE, caption,  # noqa: E402
                                      is_current_benchmark, pretraining_attributes, render,
                                      write_benchmark)


def preview(path, n=48, seed=0, size=IMAGE_SIZE, scale=4):
    """A grid of pretraining images (upscaled) with their captions printed below, for eyeballing."""
    rng = random.Random(seed)
    cols = 8
    rows = math.ceil(n / cols)
    grid = Image.new("RGB", (cols * size * scale, rows * size * scale), "white")
    for k in range(n):
        attrs = pretraining_attributes(rng)
        img = render(attrs, rng, size).resize((size * scale, size * scale), Image.NEAREST)
        grid.paste(img, ((k % cols) * size * scale, (k // cols) * size * scale))
        print(f"{k:2d}: {caption(attrs, rng)}")
    grid.save(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", help="write the benchmark to ROOT/synthetic_shapes")
    ap.add_argument("--counts", type=int, nargs=3, default=DEFAULT_COUNTS, metavar=("TRAIN", "VAL", "TEST"),
                    help="images per class (default %(default)s)")
    ap.add_argument("--seed", type=int, default=BENCHMARK_SEED)
    ap.add_argument("--if-needed", action="store_true",
                    help="with --root: write only if ROOT has no complete benchmark of this version")
    ap.add_argument("--preview", help="write a grid of pretraining images to this PNG and print their captions")
    args = ap.parse_args(argv)
    if args.root and not (args.if_needed and is_current_benchmark(args.root)):
        print("wrote", write_benchmark(args.root, tuple(args.counts), args.seed))
    if args.preview:
        preview(args.preview)


if __name__ == "__main__":
    main()
