#!/usr/bin/env python
"""Plots from an output tree (ours or the official repositories'; read as tools/parse_results.py reads it).

    python tools/plot_results.py OUTPUT_ROOT [--out DIR] [--kind all|few_shot|base2new|cost] [--method CoOp ...]

few_shot: accuracy vs. shots, one panel per dataset plus the average over datasets, one line per method
(zero-shot methods as a dashed horizontal line); writes DIR/few_shot.png and DIR/few_shot.pdf.
base2new: per method, Base and New accuracy per dataset and their average as bars, HM as a dot;
writes DIR/base2new.png and DIR/base2new.pdf. Error bars are the std over seeds.
cost: accuracy against training time of the training runs that recorded their cost (tools/results/cost.py),
one panel per protocol, one point per method and dataset (means over seeds); writes DIR/accuracy_vs_time.png
and .pdf.
"""
import argparse
import math
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from meta.protocols import DISPLAY  # noqa: E402
from tools.results.cells import collect  # noqa: E402
from tools.results.cost import TITLE as COST_TITLE, accuracy_vs_time  # noqa: E402
from tools.results.tables import Stat, base2new_tables, mean_of, order_datasets, order_methods, stat  # noqa: E402


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir, name):
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f"{name}.{ext}") for ext in ("png", "pdf")]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return paths


def few_shot_series(res, methods=None):
    """{method: {dataset or 'average': {shots: (mean, std)}}}; zero-shot methods have only shots 0."""
    series = {}
    keys = [k for k in res.cells if k[0] == "few_shot" and (methods is None or k[1] in methods)]
    datasets = order_datasets({k[2] for k in keys})
    for m in order_methods({k[1] for k in keys}):
        per = {}
        for d in datasets:
            pts = {}
            for k in keys:
                if k[1] == m and k[2] == d:
                    s = stat(res.cells[k])
                    pts[k[3]] = (s.mean, s.std)
            if pts:
                per[d] = pts
        shots = sorted({s for pts in per.values() for s in pts})
        per["average"] = {s: (sum(p[s][0] for p in per.values() if s in p) /
                              sum(1 for p in per.values() if s in p), 0.0) for s in shots}
        series[m] = per
    return series, datasets


def plot_few_shot(res, out_dir, methods=None):
    series, datasets = few_shot_series(res, methods)
    if not series:
        return []
    plt = _pyplot()
    panels = ["average"] + datasets
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    all_shots = sorted({s for per in series.values() for pts in per.values() for s in pts if s > 0}) or [1]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(axes.flat, panels):
        for i, (m, per) in enumerate(series.items()):
            pts = per.get(panel)
            if not pts:
                continue
            color = colors[i % len(colors)]
            trained = sorted(s for s in pts if s > 0)
            if trained:
                ax.errorbar(trained, [pts[s][0] for s in trained], yerr=[pts[s][1] for s in trained], marker="o",
                            ms=4, capsize=2, label=m, color=color)
            if 0 in pts:  # zero-shot: a horizontal line
                ax.axhline(pts[0][0], ls="--", lw=1.2, color=color, label=m if not trained else f"{m} (0 shots)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_shots)
        ax.set_xticklabels([str(s) for s in all_shots])
        ax.set_title(DISPLAY.get(panel, panel) + (" (mean of datasets)" if panel == "average" else ""), fontsize=10)
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), bbox_to_anchor=(0.5, -0.02),
               frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    paths = _save(fig, out_dir, "few_shot")
    plt.close(fig)
    return paths


def plot_base2new(res, out_dir, methods=None):
    tables = base2new_tables(res, set(methods) if methods else None, None, {}, False)
    if not tables:
        return []
    table = tables[-1] if len(tables) == 1 else max(tables, key=lambda t: len(t.rows))
    by_method = {}
    for row in table.rows:
        dataset, m, b, n, h = row[:5]
        by_method.setdefault(m, []).append((dataset, b, n, h))
    plt = _pyplot()
    fig, axes = plt.subplots(len(by_method), 1, figsize=(max(6, 0.9 * max(len(v) for v in by_method.values()) + 2),
                                                         2.8 * len(by_method)), squeeze=False)
    for ax, (m, rows) in zip(axes[:, 0], by_method.items()):
        xs = range(len(rows))
        width = 0.38
        for off, idx, label, hatch in ((-width / 2, 1, "Base", None), (width / 2, 2, "New", "//")):
            vals = [mean_of(r[idx]) if r[idx] is not None else 0 for r in rows]
            errs = [r[idx].std if isinstance(r[idx], Stat) else 0 for r in rows]
            ax.bar([x + off for x in xs], vals, width, yerr=errs, capsize=2, label=label, hatch=hatch,
                   edgecolor="black", linewidth=0.5)
        ax.plot(list(xs), [r[3] if r[3] is not None else float("nan") for r in rows], "ko", ms=4, label="HM")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r[0] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{m}: base vs. new classes", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    paths = _save(fig, out_dir, "base2new")
    plt.close(fig)
    return paths


def plot_cost(root, out_dir, methods=None):
    """Accuracy against training time (log scale), one panel per protocol, one point per method and dataset."""
    series = accuracy_vs_time(root, set(methods) if methods else None)
    if not series:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(5.0 * len(series), 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = order_methods({m for per in series.values() for m in per})
    for ax, (protocol, per) in zip(axes[0], series.items()):
        for m in [m for m in labels if m in per]:
            points = per[m]
            ax.scatter([p[1] for p in points], [p[2] for p in points], s=22, label=m,
                       color=colors[labels.index(m) % len(colors)])
            for dataset, seconds, acc in points:
                ax.annotate(DISPLAY.get(dataset, dataset), (seconds, acc), fontsize=6, xytext=(3, 2),
                            textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("training time (s, mean over seeds)")
        ax.set_ylabel("accuracy (%)" + (" on the base classes" if protocol == "base2new" else ""))
        ax.set_title(COST_TITLE[protocol], fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    paths = _save(fig, out_dir, "accuracy_vs_time")
    plt.close(fig)
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(prog="tools/plot_results.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="output tree")
    p.add_argument("--out", default=None, help="folder for the figures (default ROOT/plots)")
    p.add_argument("--kind", choices=["all", "few_shot", "base2new", "cost"], default="all")
    p.add_argument("--method", nargs="+", help="only these methods (table names)")
    args = p.parse_args(argv)
    res = collect(args.root)
    out = args.out or os.path.join(args.root, "plots")
    written = []
    if args.kind in ("all", "few_shot"):
        written += plot_few_shot(res, out, args.method)
    if args.kind in ("all", "base2new"):
        written += plot_base2new(res, out, args.method)
    if args.kind in ("all", "cost"):
        written += plot_cost(args.root, out, args.method)
    for path in written:
        print(path)
    if not written:
        print(f"nothing to plot under {args.root}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
