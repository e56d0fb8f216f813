#!/usr/bin/env python
"""Paper-style tables from an output tree: ours (tools/sweep.py) or the official repositories'.

    python tools/parse_results.py OUTPUT_ROOT [--format terminal|markdown|csv|latex] [--compare-published]
                                  [--protocol base2new ...] [--method CoOp ...] [--dataset dtd ...] [--no-std]
                                  [--cost]

Every folder holding a ``log.txt`` (or ``log.txt-<time>``, which Dassl writes when log.txt exists) is one
run; tools/results/ says how a run is read (logs.py), which protocol cell it fills (cells.py) and how the
tables average it (tables.py). ``--compare-published`` adds the numbers of data/published_results.csv and
ours minus theirs; ``--cost`` adds what the training runs cost (tools/results/cost.py).
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from meta.protocols import PROTOCOLS  # noqa: E402
from tools.results.cells import collect  # noqa: E402
from tools.results.cost import cost_tables  # noqa: E402
from tools.results.render import render  # noqa: E402
from tools.results.tables import PUBLISHED, build_tables, load_published  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/parse_results.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="output tree (ours or an official repository's)")
    p.add_argument("--format", choices=["terminal", "markdown", "csv", "latex"], default="terminal")
    p.add_argument("--protocol", nargs="+", choices=PROTOCOLS, help="only these protocols")
    p.add_argument("--method", nargs="+", help="only these methods (table names: CLIP, CoOp, MaPLe, ...)")
    p.add_argument("--dataset", nargs="+", help="only these datasets (yaml names)")
    p.add_argument("--compare-published", action="store_true",
                   help="add the published numbers (data/published_results.csv) and ours minus theirs")
    p.add_argument("--published", default=PUBLISHED, help="published-numbers CSV")
    p.add_argument("--no-std", action="store_true", help="means only")
    p.add_argument("--cost", action="store_true", help="add the cost tables: trainable parameters, training time, "
                   "throughput, peak memory, device and precision of the training runs, next to their accuracy")
    p.add_argument("-o", "--out", help="write to this file instead of stdout")
    args = p.parse_args(argv)
    if not os.path.isdir(args.root):
        raise SystemExit(f"error: {args.root} is not a folder")
    res = collect(args.root)
    published = load_published(args.published) if args.compare_published else {}
    datasets = set(args.dataset) if args.dataset else None
    tables = build_tables(res, args.protocol, args.method, datasets, args.compare_published, published)
    if args.cost:
        tables += cost_tables(args.root, args.protocol, set(args.method) if args.method else None, datasets)
    text = render(tables, args.format, std=not args.no_std)
    if not tables:
        print(f"no finished runs found under {args.root}", file=sys.stderr)
    if res.skipped and args.format == "terminal":
        text += f"\n({len(res.skipped)} run folder(s) without a result skipped, e.g. {res.skipped[0]})\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0 if tables else 1


if __name__ == "__main__":
    sys.exit(main())
