#!/usr/bin/env python
"""Classify images with the learned prompts of a training run or a prompt bundle (issue 18).

    python predict.py --model-dir OUT_OR_BUNDLE [--load-epoch N] IMAGES_OR_FOLDERS...
                      [--classnames FILE | --dataset-config-file YAML --root DATA]
                      [--topk K] [--format table|json|csv] [-o FILE] [--batch-size B] [-- KEY VALUE ...]

The model is rebuilt from the config the run saved (``OUT/config.yaml``; a bundle carries its own) through
the trainer's own ``build_model`` and ``load_model``, the images go through the evaluation's test transform in
batches, and the class features are encoded once, as in evaluation. Class names: the training classes by
default; ``--classnames FILE`` (one per line) or a dataset's (``--dataset-config-file``) may be new ones for
every method whose learned state is class-agnostic, and are refused in one line for the others (class-specific
context: the trainers' ``class_specific_state``). Folders are searched recursively for image files; an
unreadable image is reported by path, skipped and counted. ``KEY VALUE`` options after ``--`` override the
saved config (e.g. ``MODEL.BACKBONE.PATH`` where the CLIP weights live on this machine).
"""
import argparse
import contextlib
import csv
import io
import json
import os
import sys
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

import train
from engine.bundle import is_bundle_file, read_bundle
from engine.checkpoint import saved_run_facts
from engine.data.datasets import build_dataset
from engine.data.transforms import build_transform
from engine.trainer import TRAINER_REGISTRY
from engine.utils.io import read_image
from engine.utils.tools import UserError
from meta.errors import read_yaml
from meta.runs import write_text_atomic

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
SAVED_CONFIG = "config.yaml"


@dataclass
class Predictor:
    cfg: object
    trainer: object
    classnames: list
    source: str


@dataclass
class Predictions:
    paths: list                                    # the images classified, in input order
    logits: torch.Tensor                           # (images, classes), as evaluation computes them
    unreadable: list = field(default_factory=list)  # (path, reason)


def read_classnames(path):
    """One class name per line (blank lines and ``#`` comments skipped)."""
    try:
        with open(path) as f:
            names = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    except OSError as e:
        raise UserError(f"cannot read the class names file {path}: {e.strerror}") from e
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if not names or duplicates:
        raise UserError(f"{path} must list distinct class names, one per line"
                        + (f" ({', '.join(duplicates[:3])} repeated)" if duplicates else " (it has none)"))
    return names


def _saved_config(model_dir, bundle, config_file):
    if bundle is not None:
        return bundle["config"]
    path = os.path.join(model_dir, SAVED_CONFIG)
    if os.path.isfile(path):
        return read_yaml(path)
    if config_file:
        return None  # an older run: its config comes from the files and options given
    raise UserError(f"{model_dir} has no {SAVED_CONFIG} (train.py writes it when training starts); pass the "
                    "training run's --config-file and its KEY VALUE options after --")


def load_predictor(model_dir, load_epoch=None, classnames=None, dataset_config_file="", root="", config_file="",
                   trainer="", opts=()):
    """The trained model of ``model_dir`` (a run folder or a bundle) built for ``classnames`` (None: the training
    classes, or the dataset's with ``dataset_config_file``)."""
    bundle = read_bundle(model_dir) if is_bundle_file(model_dir) else None
    if bundle is None and not os.path.isdir(model_dir):
        raise UserError(f"--model-dir {model_dir} is neither a training run's folder nor a bundle file")
    argv = ["--eval-only", "--model-dir", model_dir]
    for flag, value in (("--root", root), ("--dataset-config-file", dataset_config_file),
                        ("--config-file", config_file), ("--trainer", trainer)):
        argv += [flag, value] if value else []
    cfg = train.setup_cfg(train.build_parser().parse_args(argv + list(opts)),
                          saved=_saved_config(model_dir, bundle, config_file))
    trainer_cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    trained = bundle["classnames"] if bundle is not None else saved_run_facts(model_dir, load_epoch)["classnames"]
    if classnames is None:
        classnames = build_dataset(cfg).classnames if dataset_config_file else trained
    if classnames is None:
        raise UserError(f"the checkpoints of {model_dir} do not name their classes (written by an older version or "
                        "the official code): pass --classnames FILE or --dataset-config-file")
    if trained is not None and list(classnames) != list(trained):
        reason = getattr(trainer_cls, "class_specific_reason", lambda c: None)(cfg)
        if reason:
            raise UserError(f"{cfg.TRAINER.NAME} cannot predict classes other than its {len(trained)} training "
                            f"classes ({reason}); leave out --classnames/--dataset-config-file")
    built = trainer_cls(cfg, classnames=list(classnames))
    built.load_model(model_dir, epoch=load_epoch)
    return Predictor(cfg, built, list(classnames), model_dir)


def find_images(inputs):
    """Files as given; folders searched recursively (sorted) for image files."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            for folder, dirs, files in os.walk(item):
                dirs.sort()
                paths += [os.path.join(folder, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
        else:
            paths.append(item)  # a missing or unreadable file is reported when it is read
    return paths


class ImageFiles(Dataset):
    """(index, tensor) per readable image, (index, reason) per unreadable one."""

    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return i, self.transform(read_image(self.paths[i]))
        except OSError as e:
            return i, str(e)


def _keep_items(items):
    return items


@torch.no_grad()
def classify(predictor, paths, batch_size=None):
    """The logits of every readable image, batched, with the class features cached as evaluation does."""
    cfg, trainer = predictor.cfg, predictor.trainer
    loader = DataLoader(ImageFiles(paths, build_transform(cfg, is_train=False)),
                        batch_size=batch_size or cfg.DATALOADER.TEST.BATCH_SIZE,
                        num_workers=cfg.DATALOADER.NUM_WORKERS, collate_fn=_keep_items)
    kept, logits, unreadable = [], [], []
    trainer.set_model_mode("eval")
    trainer.before_test("predict")
    try:
        for items in loader:
            good = [(i, x) for i, x in items if torch.is_tensor(x)]
            for i, reason in ((i, x) for i, x in items if not torch.is_tensor(x)):
                unreadable.append((paths[i], reason))
                print(f"skipped: {reason}", file=sys.stderr)
            if good:
                images = torch.stack([x for _, x in good]).to(trainer.device)
                logits.append(trainer.model_inference(images).float().cpu())
                kept += [paths[i] for i, _ in good]
    finally:
        trainer.after_test("predict")
    n_classes = len(predictor.classnames)
    return Predictions(kept, torch.cat(logits) if logits else torch.zeros(0, n_classes), unreadable)


def top_k(predictions, classnames, k):
    """[(path, [(class, probability), ...])] with the k most probable classes per image."""
    k = min(k, len(classnames))
    probs = predictions.logits.softmax(dim=-1)
    values, indices = probs.topk(k, dim=-1)
    return [(path, [(classnames[j], float(p)) for p, j in zip(v.tolist(), i.tolist())])
            for path, v, i in zip(predictions.paths, values, indices)]


def render(rows, predictions, fmt, meta):
    summary = {"classified": len(predictions.paths), "unreadable": len(predictions.unreadable)}
    if fmt == "json":
        return json.dumps({**meta, "predictions": [
            {"image": path, "top": [{"class": c, "probability": round(p, 6)} for c, p in top]} for path, top in rows],
            "unreadable": [{"image": path, "error": reason} for path, reason in predictions.unreadable],
            "summary": summary}, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["image", "rank", "class", "probability", "error"])
        for path, top in rows:
            w.writerows([path, r + 1, c, f"{p:.6f}", ""] for r, (c, p) in enumerate(top))
        w.writerows([path, "", "", "", reason] for path, reason in predictions.unreadable)
        return buf.getvalue()
    width = max([len("image")] + [len(path) for path, _ in rows])
    lines = [f"{'image'.ljust(width)}  top classes (probability)"]
    lines += [f"{path.ljust(width)}  " + "   ".join(f"{c} ({100 * p:.1f}%)" for c, p in top) for path, top in rows]
    lines.append(f"{summary['classified']} image(s) classified, {summary['unreadable']} unreadable skipped")
    return "\n".join(lines) + "\n"


def build_parser():
    p = argparse.ArgumentParser(prog="predict.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("inputs", nargs="+", help="image files and folders (searched recursively)")
    p.add_argument("--model-dir", required=True, help="a training run's output folder or a bundle (tools/export.py)")
    p.add_argument("--load-epoch", type=int, help="the checkpoint epoch of a run folder (not needed for a bundle)")
    names = p.add_mutually_exclusive_group()
    names.add_argument("--classnames", help="file with one class name per line (default: the training classes)")
    names.add_argument("--dataset-config-file", default="", help="a dataset yaml: its classes (needs --root)")
    p.add_argument("--root", default="", help="datasets' parent folder, for --dataset-config-file")
    p.add_argument("--config-file", default="", help="trainer yaml, only for runs that saved no config.yaml")
    p.add_argument("--trainer", default="", help="trainer name, only for runs that saved no config.yaml")
    p.add_argument("--topk", type=int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("-o", "--out", help="write the predictions to this file instead of stdout")
    p.add_argument("--batch-size", type=int, help="images per batch (default: DATALOADER.TEST.BATCH_SIZE)")
    p.add_argument("--verbose", action="store_true", help="show the model building log on stderr")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.topk < 1:
        raise UserError("--topk must be at least 1")
    chatter = contextlib.nullcontext(sys.stderr) if args.verbose else open(os.devnull, "w")
    with chatter as stream, contextlib.redirect_stdout(stream):
        predictor = load_predictor(args.model_dir, args.load_epoch,
                                   read_classnames(args.classnames) if args.classnames else None,
                                   args.dataset_config_file, args.root, args.config_file, args.trainer, opts)
        paths = find_images(args.inputs)
        if not paths:
            raise UserError(f"no image files in {', '.join(args.inputs)} (extensions {', '.join(IMAGE_EXTENSIONS)})")
        predictions = classify(predictor, paths, args.batch_size)
    meta = {"model": args.model_dir, "trainer": predictor.cfg.TRAINER.NAME, "classes": len(predictor.classnames)}
    text = render(top_k(predictions, predictor.classnames, args.topk), predictions, args.format, meta)
    if args.out:
        write_text_atomic(args.out, text)
    else:
        sys.stdout.write(text)
    if args.out or args.format != "table":  # the table ends with this line itself
        print(f"{len(predictions.paths)} image(s) classified, {len(predictions.unreadable)} unreadable skipped"
              + (f"; predictions in {args.out}" if args.out else ""), file=sys.stderr)
    return 0 if predictions.paths else 1


def run(argv=None):
    try:
        return main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
