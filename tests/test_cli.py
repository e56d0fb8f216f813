"""train.py as a user runs it: mistakes end with one line on stderr and exit status 2, no traceback."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=300)


def _assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith("  ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_dataset_folder_names_path_and_command(tmp_path, tiny_clip):
    proc = _run("--root", str(tmp_path), "--trainer", "CoOp", "--output-dir", str(tmp_path / "o"),
                "--dataset-config-file", "configs/datasets/caltech101.yaml", "MODEL.BACKBONE.NAME", "custom",
                "MODEL.BACKBONE.PATH", tiny_clip)
    _assert_one_line_error(proc, str(tmp_path / "caltech-101"), "tools/prepare_data.py caltech101")


@pytest.mark.parametrize("opts,fragment", [
    (["OPTIM.MAX_EPOHC", "3"], "OPTIM.MAX_EPOCH"),
    (["OPTIM.LR", "1"], "OPTIM.LR expects a float"),
    (["TRAINER.COOP.PREC", "fp8"], "TRAINER.COOP.PREC must be one of"),
])
def test_bad_options(tmp_path, caltech_root, tiny_clip, opts, fragment):
    proc = _run("--root", caltech_root, "--trainer", "CoOp", "--output-dir", str(tmp_path / "o"),
                "--dataset-config-file", "configs/datasets/caltech101.yaml", "MODEL.BACKBONE.NAME", "custom",
                "MODEL.BACKBONE.PATH", tiny_clip, *opts)
    _assert_one_line_error(proc, fragment)


def test_missing_weights_file_and_wrong_input_size(tmp_path, caltech_root, tiny_clip):
    common = ["--root", caltech_root, "--trainer", "CoOp", "--output-dir", str(tmp_path / "o"),
              "--dataset-config-file", "configs/datasets/caltech101.yaml", "MODEL.BACKBONE.NAME", "custom",
              "DATALOADER.NUM_WORKERS", "0"]
    _assert_one_line_error(_run(*common, "MODEL.BACKBONE.PATH", str(tmp_path / "nope.pt")), "nope.pt")
    _assert_one_line_error(_run(*common, "MODEL.BACKBONE.PATH", tiny_clip), "INPUT.SIZE", "(32, 32)")


def test_eval_only_with_missing_checkpoint(tmp_path, caltech_root, tiny_clip):
    proc = _run("--root", caltech_root, "--trainer", "CoOp", "--output-dir", str(tmp_path / "o"), "--eval-only",
                "--model-dir", str(tmp_path), "--load-epoch", "5", "--dataset-config-file",
                "configs/datasets/caltech101.yaml", "MODEL.BACKBONE.NAME", "custom", "MODEL.BACKBONE.PATH", tiny_clip,
                "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "TRAINER.COOP.PREC", "fp32")
    _assert_one_line_error(proc, "model.pth.tar-5")
