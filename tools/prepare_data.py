#!/usr/bin/env python
"""Download the benchmark datasets and lay them out as the dataset readers expect (DATASETS.md).

    python tools/prepare_data.py caltech101 --root DATA
    python tools/prepare_data.py all --root DATA

Archives go to DATA/downloads/ (resumable, checked against the MD5 their host publishes when known),
are extracted to a scratch folder and moved into place; the split files come from the CoOp authors'
Google Drive through gdown. Running it again is harmless: what is in place is not fetched again.
A file that cannot be fetched can be put by hand where the message says, or served from a mirror
(--mirror, see DATASETS.md). ImageNet needs a login: the command says what to download and where,
then finishes the layout. The steps are in tools/prepare/.
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.utils.tools import UserError  # noqa: E402
from tools.prepare.dataset import prepare  # noqa: E402
from tools.prepare.fetch import Context  # noqa: E402
from tools.prepare.imagenet import ManualStep  # noqa: E402
from tools.prepare.sources import SOURCES  # noqa: E402


def main(argv=None):
    keys = list(SOURCES)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=keys + ["all"])
    parser.add_argument("--root", required=True, help="folder that holds the dataset folders (DATASET.ROOT)")
    parser.add_argument("--download-dir", help="where archives are downloaded (default: ROOT/downloads)")
    parser.add_argument("--mirror", default=os.environ.get("VLPROMPT_DATA_MIRROR"),
                        help="URL or folder serving files under their own names, tried after the official "
                             "sources (default: $VLPROMPT_DATA_MIRROR)")
    parser.add_argument("--keep-archives", action="store_true", help="keep the archives after extraction")
    parser.add_argument("--with-raw", action="store_true",
                        help="also fetch the raw annotations needed only to derive a split (fetched anyway when "
                             "the split file cannot be had)")
    parser.add_argument("--val-labels", help="ImageNet: '<val file name> <wnid>' lines used to sort a flat val folder")
    args = parser.parse_args(argv)

    ctx = Context(args.root, args.download_dir, args.mirror, args.keep_archives, args.val_labels, args.with_raw)
    os.makedirs(ctx.root, exist_ok=True)
    status = {}
    for key in keys if args.dataset == "all" else [args.dataset]:
        try:
            prepare(key, ctx)
            status[key] = "ready"
        except ManualStep as e:
            status[key] = f"needs a manual step: {e}"
        except UserError as e:
            status[key] = f"FAILED: {e}"
        print(f"  {key}: {status[key]}")
    shutil.rmtree(ctx.scratch, ignore_errors=True)
    if len(status) > 1:
        print("\nSummary")
        for key, text in status.items():
            print(f"  {key:16s} {text if text == 'ready' else text.split(':')[0] + ' (see above)'}")
    return 0 if all(s == "ready" for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
