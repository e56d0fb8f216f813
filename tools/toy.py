"""A toy world for smoke runs and tests: a tiny random CLIP in OpenAI format and a tiny Caltech101 tree.

    python tools/toy.py OUT_DIR   # writes OUT_DIR/tiny_vit.pt and OUT_DIR/data/caltech-101/
"""
import json
import os
import random

import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from PIL import Image


def make_tiny_clip(path, vit=True, width=64, layers=2, embed_dim=32, image_size=32, patch_size=8, seed=0,
                   vision_width=None):
    """Save a random CLIP state dict with OpenAI's key names (heads = width // 64, as OpenAI infers)."""
    torch.manual_seed(seed)
    vision = (CLIPVisionCfg(layers=layers, width=vision_width or width, patch_size=patch_size,
                            image_size=image_size) if vit else
              CLIPVisionCfg(layers=(1, 1, 1, 1), width=width // 2, image_size=image_size, head_width=width))
    model = CLIP(embed_dim, vision_cfg=vision,
                 text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=width, heads=max(1, width // 64),
                                      layers=layers), quick_gelu=True)
    sd = model.state_dict()
    g = torch.Generator().manual_seed(seed)
    for k, v in sd.items():  # non-trivial LayerNorm/bias values so mistakes in their use show up
        if v.is_floating_point() and ("ln" in k or "bias" in k) and v.dim() == 1:
            v.add_(0.1 * torch.randn(v.shape, generator=g))
    sd["logit_scale"] = torch.tensor(4.6052)
    torch.save(sd, path)
    return path


CLASSES = ["accordion", "airplanes", "anchor", "ant", "barrel", "bass"]


def make_caltech(root, classes=CLASSES, n_train=4, n_val=2, n_test=3, seed=0, size=(40, 48)):
    """Caltech101 in CoOp's layout: 101_ObjectCategories/<cat>/image_000N.jpg + split_zhou_Caltech101.json.

    Each class gets its own colour so a tiny model can learn the task."""
    rng = random.Random(seed)
    base = os.path.join(root, "caltech-101")
    img_dir = os.path.join(base, "101_ObjectCategories")
    split = {"train": [], "val": [], "test": []}
    for label, cat in enumerate(classes):
        os.makedirs(os.path.join(img_dir, cat), exist_ok=True)
        colour = [rng.randrange(256) for _ in range(3)]
        name = {"airplanes": "airplane"}.get(cat, cat)
        n = n_train + n_val + n_test
        for i in range(n):
            img = Image.new("RGB", size, tuple(colour))
            px = img.load()
            for _ in range(60):
                px[rng.randrange(size[0]), rng.randrange(size[1])] = tuple(rng.randrange(256) for _ in range(3))
            rel = f"{cat}/image_{i + 1:04d}.jpg"
            img.save(os.path.join(img_dir, rel))
            part = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            split[part].append([rel, label, name])
    with open(os.path.join(base, "split_zhou_Caltech101.json"), "w") as f:
        json.dump(split, f, indent=4, separators=(", ", ": "))
    return root




if __name__ == "__main__":
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "toy"
    os.makedirs(out, exist_ok=True)
    make_tiny_clip(os.path.join(out, "tiny_vit.pt"))
    make_caltech(os.path.join(out, "data"), n_train=8, n_test=6, classes=CLASSES + ["beaver", "bonsai"])
    print(f"wrote {out}/tiny_vit.pt and {out}/data/caltech-101")
