"""The benchmark datasets; importing this package registers them in DATASET_REGISTRY (train.py does
``import datasets``)."""
from . import (caltech101, dtd, eurosat, fgvc_aircraft, food101, imagenet, imagenet_a, imagenet_r,  # noqa: F401
               imagenet_sketch, imagenetv2, oxford_flowers, oxford_pets, stanford_cars, sun397, ucf101)
from . import synthetic_shapes  # noqa: F401  (the offline demo benchmark, datasets/synthetic_world.py)

