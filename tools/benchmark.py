"""Speed and memory of every trainer: the official-equivalent path against ours, measured in one run.

    python tools/benchmark.py                       # ViT-B/16, 10/100/1000 classes, every trainer
    python tools/benchmark.py --backbone ViT-B/32 --classes 10 100 --trainers CoOp SEP --device cpu

Random weights in the backbone's real shapes (no download). For each trainer and class count it times
a training step (median) and evaluation per test image, for
  * "upstream": the computation of the official code (MODEL.TEXT_TRUNCATE False, TEST.CACHE_TEXT_FEATURES
    False, and each trainer's own switches listed in UPSTREAM_OPTS), numerically the official path;
  * "ours": the defaults (exact optimizations on),
and prints the ratio, the peak memory (CUDA), and each path's distance from a floor: the counted FLOPs of
work no implementation can skip (frozen forward passes, plus forward and backward through encoders that
carry prompts) divided by the machine's measured matmul rate.
Evaluation per image amortises the class encoding over --test-images images when it is computed once.
"""
import argparse
import os
import statistics
import sys
import time
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402  (registers trainers and datasets)
from engine.config import get_cfg_default, merge_from_file, merge_from_list  # noqa: E402
from engine.trainer import TRAINER_REGISTRY, TrainerBase  # noqa: E402

# trainer -> (config yaml, extra options, test batch of the official yaml, does the image tower carry prompts)
TRAINERS = {
    "CoOp": ("CoOp/vit_b16_ep50.yaml", ["TRAINER.COOP.N_CTX", "16"], 100, False),
    "CoCoOp": ("CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", [], 100, False),
    "KgCoOp": ("KgCoOp/vit_b16_ep100_ctxv1.yaml", ["TRAINER.COOP.W", "8.0"], 100, False),
    "MaPLe": ("MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", [], 100, True),
    "IVLP": ("IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml", [], 100, True),
    "VPT": ("VPT/vit_b16_c2_ep5_batch4_4.yaml", [], 100, True),
    "SEP": ("SEP/vit_b32_ep50_ctxv1.yaml", ["TRAINER.COOP.N_CTX", "6", "TRAINER.COOP.N_CTX_V", "4",
                                             "TRAINER.COOP.W", "8.0", "TRAINER.COOP.W_V", "6.0"], 500, True),
    "ALIGN": ("ALIGN/vit_b16_c2_ep5_batch4_2ctx.yaml", [], 100, True),
}
UPSTREAM_OPTS = ["MODEL.TEXT_TRUNCATE", "False", "TEST.CACHE_TEXT_FEATURES", "False"]
# per-trainer switches back to the upstream computation (added by each trainer that has more)
TRAINER_UPSTREAM_OPTS = {}


def random_clip_factory(name):
    """load_clip stand-in: the OpenAI architecture of ``name`` with random weights (OpenAI's fp16 layout)."""
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, build_model_from_openai_state_dict

    from models.clip import AVAILABLE_BACKBONES

    spec = open_clip.get_model_config(AVAILABLE_BACKBONES[name])
    reference = CLIP(spec["embed_dim"], vision_cfg=CLIPVisionCfg(**spec["vision_cfg"]),
                     text_cfg=CLIPTextCfg(**spec["text_cfg"]), quick_gelu=True)
    state = reference.state_dict()

    def load(_name, _path, precision, device):
        model = build_model_from_openai_state_dict(dict(state), cast_dtype=torch.float16)
        if precision != "fp16" or torch.device(device).type == "cpu":
            model.float()
        model.to(device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    return load


def build_trainer(name, classes, backbone, device, upstream, repo):
    config, opts, _, _ = TRAINERS[name]
    cfg = get_cfg_default()
    train.extend_cfg(cfg)
    merge_from_file(cfg, os.path.join(repo, "configs/trainers", config))
    size = 336 if backbone.endswith("336px") else 224
    merge_from_list(cfg, ["MODEL.BACKBONE.NAME", backbone, "INPUT.SIZE", f"({size}, {size})", "TRAINER.NAME", name,
                          "USE_CUDA", str(device.type == "cuda"), *opts])
    if upstream:
        merge_from_list(cfg, UPSTREAM_OPTS + TRAINER_UPSTREAM_OPTS.get(name, []))
    cfg.freeze()
    cls = TRAINER_REGISTRY.get(name)
    trainer = cls.__new__(cls)  # no data loading: the model is built for ``classes`` synthetic class names
    TrainerBase.__init__(trainer)
    trainer.cfg, trainer.device, trainer.output_dir = cfg, device, ""
    trainer.start_epoch = trainer.epoch = 0
    trainer.max_epoch = cfg.OPTIM.MAX_EPOCH
    names = [f"class number {i} of the benchmark" for i in range(classes)]
    trainer.dm = types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=names))
    trainer.build_model()
    if upstream and name == "CoCoOp":
        trainer.model.text_chunk_images = 1  # upstream encodes the prompts of one image at a time
    return trainer, size


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat):
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(trainer, size, batch, test_batch, steps, test_images, device):
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, len(trainer.dm.dataset.classnames), (batch,), device=device)
    trainer.set_model_mode("train")
    trainer.num_batches, trainer.batch_idx = 10 ** 6, 0
    step = lambda: trainer.forward_backward({"img": images, "label": labels, "domain": labels})  # noqa: E731
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step()  # warm-up
    train_s = timed(step, device, steps)
    peak_train = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None
    trainer.set_model_mode("eval")
    test = torch.randn(test_batch, 3, size, size, device=device)
    with torch.no_grad():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        trainer.before_test("test")
        cached = trainer.model._text_cache is not None if hasattr(trainer.model, "_text_cache") else False
        class_s = timed(lambda: (trainer.after_test("test"), trainer.before_test("test")), device, 1) if cached else 0
        batch_s = timed(lambda: trainer.model_inference(test), device, max(1, steps // 2))
        peak_eval = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None
        trainer.after_test("test")
    eval_per_image = batch_s / test_batch + class_s / test_images
    return train_s, eval_per_image, peak_train, peak_eval


def count_flops(fn):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def floor_flops(trainer, size, batch, test_batch, test_images, vision_prompted):
    """Unavoidable work: one frozen image pass per image, one text pass per class over the tokens up to the
    end token; forward + backward (x3) through the encoders that carry prompts."""
    model = trainer.model
    img = torch.randn(1, 3, size, size, device=trainer.device)
    with torch.no_grad():
        f_img = count_flops(lambda: model.image_encoder(img.to(model.dtype)))
        pl = getattr(model, "prompt_learner", None)
        tokens = getattr(pl, "tokenized_prompts", None)
        if tokens is None:
            from models import tokenize

            tokens = tokenize(trainer.dm.dataset.classnames).to(trainer.device)
        length = int(tokens.argmax(-1).max()) + 1
        f_txt = count_flops(lambda: model.text_encoder.encode_tokens(tokens[:, :length]))
    text_prompted = not isinstance(getattr(model, "fixed_text_features", None), torch.Tensor)
    train = batch * f_img * (3 if vision_prompted else 1) + f_txt * (3 if text_prompted else 0)
    evaluate = f_img + f_txt / test_images
    return train, evaluate


def matmul_rate(device, n=1024, repeat=5):
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    seconds = timed(lambda: a @ b, device, repeat)
    return 2 * n ** 3 / seconds


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="ViT-B/16")
    ap.add_argument("--trainers", nargs="+", default=list(TRAINERS))
    ap.add_argument("--classes", nargs="+", type=int, default=[10, 100, 1000])
    ap.add_argument("--batch", type=int, default=4, help="training batch (official MaPLe-family: 4)")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps (median)")
    ap.add_argument("--test-images", type=int, default=50000, help="test set size the class encoding spans")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    import trainers.base as trainer_base

    trainer_base.load_clip = random_clip_factory(args.backbone)
    rate = matmul_rate(device)
    print(f"device {device}, {torch.get_num_threads()} threads, measured fp32 matmul rate {rate / 1e9:.1f} GFLOP/s; "
          f"backbone {args.backbone}, train batch {args.batch}, test set {args.test_images} images")
    header = ("trainer", "classes", "train s/step up", "ours", "speed-up", "floor x up/ours",
              "eval ms/img up", "ours", "speed-up", "floor x up/ours", "peak MiB train/eval")
    rows = []
    for name in args.trainers:
        if name not in TRAINER_REGISTRY:
            print(f"skipping {name}: not registered")
            continue
        for classes in args.classes:
            result = {}
            for upstream in (True, False):
                torch.manual_seed(0)
                trainer, size = build_trainer(name, classes, args.backbone, device, upstream, repo)
                test_batch = TRAINERS[name][2]
                result[upstream] = measure(trainer, size, args.batch, test_batch, args.steps, args.test_images,
                                           device)
                if not upstream:
                    floor = floor_flops(trainer, size, args.batch, test_batch, args.test_images, TRAINERS[name][3])
                del trainer
            (tu, eu, _, _), (to, eo, pt, pe) = result[True], result[False]
            ft, fe = floor[0] / rate, floor[1] / rate
            rows.append((name, classes, f"{tu:.3f}", f"{to:.3f}", f"{tu / to:.2f}x",
                         f"{tu / ft:.1f}/{to / ft:.1f}", f"{1e3 * eu:.2f}", f"{1e3 * eo:.2f}", f"{eu / eo:.1f}x",
                         f"{eu / fe:.1f}/{eo / fe:.1f}", "-" if pt is None else f"{pt:.0f}/{pe:.0f}"))
            print(" | ".join(map(str, rows[-1])), flush=True)
    from tabulate import tabulate

    print()
    print(tabulate(rows, headers=header, tablefmt="github"))


if __name__ == "__main__":
    main()
