#!/usr/bin/env python
"""Experiment sweeps (the driver is the package tools/sweeps/; ``--help`` describes protocols and layout)."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tools.sweeps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
