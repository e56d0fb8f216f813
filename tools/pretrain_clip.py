"""Pretrain a small CLIP (OpenAI architecture, standard CLIP tokenizer) on SyntheticShapes captions, on CPU.

    nice -n 10 python tools/pretrain_clip.py --out data/demo_clip/synthetic_clip.pt

The defaults are the recipe of the committed data/demo_clip/synthetic_clip.pt (see data/demo_clip/README.md).
Data: a pool of images rendered by datasets/synthetic_world.py from random attribute combinations of the
whole vocabulary *minus 8 held-out colour-shape pairs of the benchmark*; every step draws a batch from the
pool, flips it at random and writes a fresh caption for each image. Loss: CLIP's symmetric contrastive loss, with
every caption in the batch that correctly describes an image counted as a positive of that image
(multi-positive InfoNCE; a batch of 256 holds many images with the same attributes).
The text tower runs on the batch's captions cut after their longest end token; with the causal mask
this is exactly what the full 77-token forward computes at the end token.

Output: an OpenAI-format state dict (token embedding stored fp16, the rest fp32) that loads with
``MODEL.BACKBONE.NAME custom MODEL.BACKBONE.PATH <file>``, and <file minus .pt>.json with the recipe,
versions, timings and the zero-shot accuracy of the saved file on a held-out set.
"""
import argparse
import hashlib
import json
import math
import os
import platform
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from datasets import synthetic_world as synthetic  # noqa: E402

CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def build_model(args):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    for w in (args.vision_width, args.text_width):
        if w % 64:
            raise SystemExit("widths must be multiples of 64 (OpenAI-format loaders infer heads = width // 64)")
    vision = CLIPVisionCfg(layers=args.vision_layers, width=args.vision_width, patch_size=args.patch_size,
                           image_size=args.image_size)
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=args.text_width, heads=args.text_width // 64,
                       layers=args.text_layers)
    return CLIP(args.embed_dim, vision_cfg=vision, text_cfg=text, quick_gelu=True)


def encode_text(model, tokens):
    """model.encode_text on tokens cut after the longest end token (identical features, causal mask)."""
    n = int((tokens != 0).sum(1).max())
    tokens = tokens[:, :n]
    x = model.token_embedding(tokens) + model.positional_embedding[:n]
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), tokens.argmax(-1)]
    return x @ model.text_projection


def to_tensor(images):
    x = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2).float() / 255
    return (x - CLIP_MEAN) / CLIP_STD


def render_pool(n, seed, size):
    """n pretraining images as a uint8 tensor (n, 3, size, size) and their attribute dicts."""
    rng = random.Random(seed)
    attrs = [synthetic.pretraining_attributes(rng) for _ in range(n)]
    images = np.empty((n, size, size, 3), np.uint8)
    for i, a in enumerate(attrs):
        images[i] = np.asarray(synthetic.render(a, rng, size))
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), attrs


def attribute_codes(attrs, captions):
    """Integer codes: the image's colour, pattern, shape, size, background, and what each caption names
    (size and background only when the caption says them; -1 = not said)."""
    rows = []
    for a, text in zip(attrs, captions):
        words = set(text.replace(".", "").replace(",", "").split())
        size = synthetic.SIZES.index(a["size"]) if a["size"] else len(synthetic.SIZES)
        bg = synthetic.BACKGROUNDS.index(a["background"])
        rows.append([list(synthetic.COLOURS).index(a["colour"]), synthetic.PATTERNS.index(a["pattern"]),
                     synthetic.SHAPES.index(a["shape"]), size, bg, size if a["size"] in words else -1,
                     bg if "background" in words else -1])
    return torch.tensor(rows)


def positives(codes):
    """positives[i, j]: caption j is a correct description of image i."""
    img, said = codes[:, None, :], codes[None, :, :]
    same = (img[..., :3] == said[..., :3]).all(-1)
    size_ok = (said[..., 5] < 0) | (said[..., 5] == img[..., 3])
    bg_ok = (said[..., 6] < 0) | (said[..., 6] == img[..., 4])
    return (same & size_ok & bg_ok).float()


@torch.no_grad()
def zero_shot(model, n_per_class=25, seed=12345, size=32, template="a photo of a {}."):
    """Zero-shot accuracy (%) on freshly rendered benchmark-style images: base classes among base, new among new
    (the split of benchmark_classes(); the committed JSON was written under the earlier split, see its README)."""
    from models import tokenize

    model.eval()
    classes = synthetic.benchmark_classes()
    names = [synthetic.class_name(*c) for c in classes]
    text = F.normalize(encode_text(model, tokenize([template.format(n) for n in names])), dim=-1)
    rng = random.Random(seed)
    images, labels = [], []
    for label, (c, p, s) in enumerate(classes):
        for _ in range(n_per_class):
            a = synthetic.random_attributes(rng, colours=[c], shapes=[s], patterns=[p],
                                            sizes=[synthetic.BENCHMARK_SIZE])
            images.append(synthetic.render(a, rng, size))
            labels.append(label)
    feats = F.normalize(model.encode_image(to_tensor(images)), dim=-1)
    labels = torch.tensor(labels)
    half = len(classes) // 2
    acc = {}
    for split, sl in (("base", slice(0, half)), ("new", slice(half, None))):
        rows = (labels >= sl.start) & (labels < (sl.stop if sl.stop is not None else len(classes)))
        pred = (feats[rows] @ text[sl].t()).argmax(-1) + sl.start
        acc[split] = round(100.0 * (pred == labels[rows]).float().mean().item(), 2)
    model.train()
    return acc


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or "embedding" in name or name in ("logit_scale", "visual.class_embedding"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def save_openai_state_dict(model, path):
    """OpenAI key names; the token embedding (49408 rows) in fp16 to keep the file small."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sd["token_embedding.weight"] = sd["token_embedding.weight"].half()
    tmp = path + ".tmp"
    torch.save(sd, tmp)
    os.replace(tmp, path)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_digest(path):
    """sha256 over the saved tensors (name, dtype, shape, bytes in key order). Unlike the file's sha256 it does not
    depend on the file name, which torch.save writes into the archive: equal digests = identical weights."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    h = hashlib.sha256()
    for k in sorted(sd):
        v = sd[k].contiguous()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def versions():
    import open_clip
    import PIL

    return {"python": platform.python_version(), "torch": torch.__version__, "open_clip_torch": open_clip.__version__,
            "numpy": np.__version__, "Pillow": PIL.__version__}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/demo_clip/synthetic_clip.pt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (results depend on it bitwise)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--patch-size", type=int, default=8)
    ap.add_argument("--vision-width", type=int, default=64)
    ap.add_argument("--vision-layers", type=int, default=3)
    ap.add_argument("--text-width", type=int, default=64)
    ap.add_argument("--text-layers", type=int, default=2)
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--pool", type=int, default=40000, help="pretraining images rendered once")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=250, help="zero-shot check (does not change the weights)")
    ap.add_argument("--eval-per-class", type=int, default=25, help="images per class of the zero-shot check")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return pretrain(args, " ".join(argv if argv is not None else sys.argv[1:]))
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process (tests)


def pretrain(args, command_args):
    from models import load_clip, tokenize

    t_start, cpu_start = time.time(), time.process_time()
    torch.manual_seed(args.seed)
    data_rng = random.Random(args.seed)
    model = build_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"CLIP: vision {args.vision_layers}x{args.vision_width} (patch {args.patch_size}, {args.image_size}px), "
          f"text {args.text_layers}x{args.text_width}, embed {args.embed_dim}; {n_params / 1e6:.2f} M parameters")

    t0 = time.time()
    pool, pool_attrs = render_pool(args.pool, args.seed, args.image_size)
    render_time = time.time() - t0
    print(f"rendered {args.pool} images in {render_time:.0f} s")

    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / args.steps))))
    gen = torch.Generator().manual_seed(args.seed)
    model.train()
    history = []
    t0 = time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(pool), (args.batch_size,), generator=gen)
        images = pool[idx].float() / 255
        flip = torch.rand(args.batch_size, generator=gen) < 0.5
        images[flip] = images[flip].flip(-1)
        images = (images - CLIP_MEAN) / CLIP_STD
        attrs = [pool_attrs[i] for i in idx.tolist()]
        captions = [synthetic.caption(a, data_rng) for a in attrs]
        pos = positives(attribute_codes(attrs, captions))

        img = F.normalize(model.encode_image(images), dim=-1)
        txt = F.normalize(encode_text(model, tokenize(captions)), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.t()
        loss = 0.5 * (torch.sum(-pos / pos.sum(1, keepdim=True) * logits.log_softmax(1), 1).mean()
                      + torch.sum(-pos.t() / pos.t().sum(1, keepdim=True) * logits.t().log_softmax(1), 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 50 == 0 or step == 1:
            el = time.time() - t0
            print(f"step {step}/{args.steps} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f} "
                  f"lr {sched.get_last_lr()[0]:.2e} ({el / step:.2f} s/step, {el / 60:.1f} min)", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            acc = zero_shot(model, args.eval_per_class, size=args.image_size)
            history.append({"step": step, "loss": round(loss.item(), 4), **acc})
            print(f"  zero-shot: base {acc['base']:.1f}%  new {acc['new']:.1f}%", flush=True)
    train_time = time.time() - t0

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_openai_state_dict(model, args.out)
    # what the toolkit will see: the file loaded the way train.py loads it
    loaded = load_clip("custom", args.out, "fp32")
    final = zero_shot(loaded, args.eval_per_class, size=args.image_size)
    print(f"saved {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB); zero-shot of the saved file: "
          f"base {final['base']:.1f}%  new {final['new']:.1f}% (chance 6.25%)")
    meta = {
        "command": "python tools/pretrain_clip.py " + command_args,
        "args": vars(args), "versions": versions(), "sha256": sha256(args.out),
        "tensors_sha256": state_digest(args.out),
        "parameters": n_params, "render_seconds": round(render_time), "train_seconds": round(train_time),
        "total_seconds": round(time.time() - t_start), "cpu_seconds": round(time.process_time() - cpu_start),
        "history": history,
        "zero_shot_saved_file": final,
    }
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=1)
    return meta


if __name__ == "__main__":
    main()
