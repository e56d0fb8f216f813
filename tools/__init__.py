"""The command-line tools: data preparation, sweeps, results tables and plots, demo pretraining, benchmark.
Each ``tools/<name>.py`` is a script; packages (sweeps/, results/, prepare/) hold what they run."""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository: train.py's folder
