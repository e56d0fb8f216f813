"""What a run costs (issue 18): trainable parameters, training wall time and time per epoch, training and test
images per second, peak memory, device and precision. The trainer feeds the meter; ``OUTPUT_DIR/cost.json``
(written atomically) and one ``=> cost`` line of the log hold the figures, and the sweep copies the file into
its ``done.json``."""
import json
import os
import resource
import sys
import time

import torch

from meta.runs import COST_FILE, write_json_atomic

COST_HEADER = "=> cost"


def trainable_parameter_count(modules):
    """Elements of the parameters that require gradients, each parameter counted once (shared modules)."""
    seen, total = set(), 0
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def peak_memory_mib(device):
    """CUDA: the allocator's peak since the process started; CPU: the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class CostMeter:
    """Times of this process's training epochs and evaluations (a resumed run times its own epochs only)."""

    def __init__(self, device):
        self.device = device
        self.epoch_seconds, self.train_images = [], 0
        self.train_seconds = None
        self.test_images, self.test_seconds = 0, 0.0
        self._clock = {}

    def start(self, what):
        _sync(self.device)
        self._clock[what] = time.perf_counter()

    def stop(self, what):
        _sync(self.device)
        return time.perf_counter() - self._clock.pop(what)

    def epoch_done(self, seconds, images):
        self.epoch_seconds.append(seconds)
        self.train_images += images

    def test_done(self, seconds, images):
        """The last evaluation's figures (a run evaluates val splits too; the last is the reported one)."""
        self.test_seconds, self.test_images = seconds, images

    def summary(self, params, precision):
        epochs = sum(self.epoch_seconds)
        out = {
            "trainable_params": params,
            "train_seconds": None if self.train_seconds is None else round(self.train_seconds, 3),
            "epochs_timed": len(self.epoch_seconds),
            "seconds_per_epoch": round(epochs / len(self.epoch_seconds), 3) if self.epoch_seconds else None,
            "train_images_per_second": round(self.train_images / epochs, 2) if epochs > 0 else None,
            "test_images": self.test_images,
            "test_images_per_second": (round(self.test_images / self.test_seconds, 2)
                                       if self.test_seconds > 0 else None),
            "peak_memory_mib": round(peak_memory_mib(self.device), 1),
            "peak_memory_kind": "cuda_max_allocated" if self.device.type == "cuda" else "max_rss",
            "device": (f"cuda ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda"
                       else self.device.type),
            "precision": precision,
        }
        return out


def write_cost(output_dir, cost):
    """``cost.json`` (atomic) and the log line ``=> cost {...}``."""
    write_json_atomic(os.path.join(output_dir, COST_FILE), cost)
    print(f"{COST_HEADER} {json.dumps(cost)}")
