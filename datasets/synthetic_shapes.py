"""SyntheticShapes (synthetic_world.py): the offline demo benchmark, generated on first use.

32 classes "<colour> <pattern> <shape>" (red/green/blue/yellow x plain/striped x circle/square/triangle/star),
one large object per 32x32 image (a close-up) with random position, size, rotation, colour jitter,
background and noise.
Labels 0-15 are the base classes, 16-31 the new ones: the standard split (DATASET.SUBSAMPLE_CLASSES base =
the first ceil(n/2) labels) gives base = the circles and squares, new = the triangles and stars, each in
every colour and pattern. New classes share colours and patterns with the base classes but not their shapes,
and the demo CLIP (data/demo_clip/) never saw 8 of the 16 colour-shape pairs (4 per side) during pretraining.

Layout: synthetic_shapes/images/<colour>_<pattern>_<shape>/NNNN.png and split_zhou_SyntheticShapes.json
(32 train / 8 val / 30 test images per class). If DATASET.ROOT has no complete copy, it is written there
(a few seconds, deterministic: synthetic_world.BENCHMARK_SEED); a copy with the split of an earlier
version (base = colour-shape pairs with i + j even) is written anew.
"""
import os

from engine.data.datasets import DATASET_REGISTRY
from engine.utils.tools import UserError

from . import synthetic_world as synthetic
from .common import BenchmarkDataset


@DATASET_REGISTRY.register()
class SyntheticShapes(BenchmarkDataset):
    dataset_dir = synthetic.DATASET_DIR
    image_subdir = "images"
    split_file = synthetic.SPLIT_FILE
    prepare_key = "synthetic_shapes"

    def __init__(self, cfg):
        if cfg.DATASET.ROOT:  # (an empty root is reported by the shared code)
            root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
            if not synthetic.is_current_benchmark(root):
                print(f"Generating the SyntheticShapes benchmark in {os.path.join(root, self.dataset_dir)}")
                try:
                    synthetic.write_benchmark(root)
                except OSError as e:
                    raise UserError(f"cannot write the SyntheticShapes benchmark under {root} ({e}); set --root "
                                    "to a writable folder") from e
        super().__init__(cfg)

    def load_splits(self):
        self.hint = f"; delete {self.dataset_dir} and run again to generate it anew"
        return super().load_splits()
