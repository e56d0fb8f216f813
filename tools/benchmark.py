"""Speed and memory of every trainer: the official-equivalent path against ours, measured in one run.

    python tools/benchmark.py                       # ViT-B/16, 10/100/1000 classes, every trainer
    python tools/benchmark.py --backbone ViT-B/32 --classes 10 100 --trainers CoOp SEP --device cpu
    python tools/benchmark.py --backbone ViT-B-16 --pretrained laion2b_s34b_b88k   # an open_clip model (GELU)

Random weights in the backbone's real shapes (no download, no data). For each trainer and class count
it measures, for two builds of the same trainer side by side:
  * "upstream": every exact optimization switched off (MODEL.TEXT_TRUNCATE, MODEL.TEXT_SHARED_PREFIX,
    TEST.CACHE_TEXT_FEATURES False, and each trainer's own switches, ``benchmark.upstream_opts`` of its
    method.yaml): numerically the official computation, done the official way;
  * "ours": the defaults;
  * the median training-step time (forward, backward, optimizer step) and its peak memory;
  * evaluation time per test image: the image-side forward of --eval-batch images (timed with the class
    side already encoded) plus the class encoding, which upstream repeats for every test batch of the
    official yaml (DATALOADER.TEST.BATCH_SIZE) and ours runs once per evaluation of --test-images images;
  * the floor: the FLOPs of our training step / class encoding / image forward, counted by PyTorch's
    FLOP counter (frozen forward passes, backward through the prompted encoders: work no implementation
    skips), divided by the best fp32 matmul rate measured on this machine; "x floor" = time / floor.
Peak memory: CUDA's allocator peak, or on CPU the process's resident-set growth sampled every ms.
Each trainer is measured in the setting of the ``benchmark`` section of its configs/trainers/<T>/method.yaml
(a config and its official options); --trainers takes the trainers that have one.
No assertion anywhere: this is a measuring tool, its output goes in the README.
"""
import argparse
import contextlib
import ctypes
import os
import statistics
import sys
import threading
import time
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trainers  # noqa: E402,F401  (registers the trainers)
from engine.trainer import TRAINER_REGISTRY, TrainerBase  # noqa: E402
from meta.methods import all_methods  # noqa: E402
from tools.train_config import resolve_config  # noqa: E402

# trainer -> its benchmark setting (configs/trainers/<T>/method.yaml), in table order
BENCHMARKS = {name: m.benchmark for name, m in all_methods().items() if m.benchmark is not None}
UPSTREAM_OPTS = ["MODEL.TEXT_TRUNCATE", "False", "MODEL.TEXT_SHARED_PREFIX", "False",
                 "TEST.CACHE_TEXT_FEATURES", "False"]
# class names of ImageNet-like BPE lengths (1-4 tokens; the longest decides where the text is cut)
NAME_WORDS = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead", "electric ray",
              "stingray", "rooster", "hen", "ostrich", "brambling", "goldfinch", "house finch", "junco",
              "indigo bunting", "American robin", "bulbul", "jay", "magpie", "chickadee"]


def class_names(count):
    return [f"{NAME_WORDS[i % len(NAME_WORDS)]} {i // len(NAME_WORDS)}" for i in range(count)]


def random_clip_factory(name, pretrained=""):
    """load_clip stand-in: the architecture of ``name`` with random weights (OpenAI's: OpenAI's fp16 layout;
    an open_clip name: its config's, with the activation of the tag ``pretrained``)."""
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, build_model_from_openai_state_dict

    from models.clip import AVAILABLE_BACKBONES, build_open_clip, freeze, open_clip_backbone

    backbone = open_clip_backbone(name, pretrained)
    if backbone is not None:
        state = build_open_clip(backbone).state_dict()
        return lambda _name, _path, precision, device, *_: freeze(_loaded(build_open_clip(backbone, precision,
                                                                                           device), state))
    spec = open_clip.get_model_config(AVAILABLE_BACKBONES[name])
    reference = CLIP(spec["embed_dim"], vision_cfg=CLIPVisionCfg(**spec["vision_cfg"]),
                     text_cfg=CLIPTextCfg(**spec["text_cfg"]), quick_gelu=True)
    state = reference.state_dict()
    del reference

    def load(_name, _path, precision, device, *_):
        model = build_model_from_openai_state_dict(dict(state), cast_dtype=torch.float16)
        if precision != "fp16" or torch.device(device).type == "cpu":
            model.float()
        return freeze(model.to(device))

    return load


def _loaded(model, state):
    model.load_state_dict(state)
    return model


def benchmark_config(name, args, device, upstream, size):
    """The resolved config of train.py for this trainer's benchmark setting (upstream: speed-ups off)."""
    setting = BENCHMARKS[name]
    node = getattr(TRAINER_REGISTRY.get(name), "config_node", "")
    opts = ["MODEL.BACKBONE.NAME", args.backbone, "MODEL.BACKBONE.PATH", args.clip_path or "",
            "MODEL.BACKBONE.PRETRAINED", args.pretrained,
            "INPUT.SIZE", f"({size}, {size})", "USE_CUDA", str(device.type == "cuda"), *setting.opts, *args.opts]
    if args.prec and node:
        opts += [f"TRAINER.{node}.PREC", args.prec]
    if upstream:
        opts += UPSTREAM_OPTS + list(setting.upstream_opts)
    return resolve_config(["--trainer", name, "--config-file", setting.config_file, *opts])


def build_trainer(name, classes, args, device, upstream, size):
    cfg = benchmark_config(name, args, device, upstream, size)
    cls = TRAINER_REGISTRY.get(name)
    trainer = cls.__new__(cls)  # no data: the model is built for ``classes`` synthetic class names
    TrainerBase.__init__(trainer)
    trainer.cfg, trainer.device, trainer.output_dir = cfg, device, ""
    trainer.start_epoch = trainer.epoch = 0
    trainer.max_epoch = cfg.OPTIM.MAX_EPOCH
    trainer.dm = types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=class_names(classes)))
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        trainer.build_model()
    if upstream and name == "CoCoOp":
        trainer.model.text_chunk_images = 1  # upstream encodes the prompts of one image at a time
    return trainer


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


class PeakMemory:
    """Peak memory (MiB) above the level at entry: CUDA allocator statistics, or the resident set on CPU."""

    def __init__(self, device):
        self.device, self.peak = device, 0.0

    @staticmethod
    def _rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self._base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            return self
        self._base, self._max, self._stop = self._rss(), 0, threading.Event()

        def sample():
            while not self._stop.is_set():
                self._max = max(self._max, self._rss())
                time.sleep(0.001)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = (torch.cuda.max_memory_allocated() - self._base) / 2 ** 20
        else:
            self._stop.set()
            self._thread.join()
            self.peak = (max(self._max, self._rss()) - self._base) / 2 ** 20


def count_flops(fn):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def has_text_cache(trainer):
    return hasattr(trainer.model, "cache_text_features") and not getattr(trainer.model, "image_conditioned_text",
                                                                         False)


def measure(trainer, size, args, device, count, train_step):
    """Training step if ``train_step`` (median s, peak MiB, FLOPs), class encoding (s, FLOPs), image side per
    image (s, FLOPs), eval peak MiB. ``count`` also counts the FLOPs (for the floor)."""
    torch.manual_seed(0)
    out = {}
    images = torch.randn(args.batch, 3, size, size, device=device)
    labels = torch.randint(0, len(trainer.dm.dataset.classnames), (args.batch,), device=device)
    if train_step:
        trainer.set_model_mode("train")
        trainer.num_batches, trainer.batch_idx = 10 ** 6, 0
        step = lambda: trainer.forward_backward({"img": images, "label": labels, "domain": labels})  # noqa: E731
        with PeakMemory(device) as memory:
            step()  # warm-up
        out["train_s"] = timed(step, device, args.steps)
        out["train_mib"] = memory.peak
        if count:
            out["train_flops"] = count_flops(step)
    trainer.set_model_mode("eval")
    conditioned = not has_text_cache(trainer)
    batch = 1 if conditioned else args.eval_batch  # image-conditioned text: ~n_cls text passes per image
    test = torch.randn(batch, 3, size, size, device=device)
    with torch.no_grad():
        encode = trainer.model.cache_text_features if not conditioned else None
        out["text_s"] = timed(encode, device, 1) if encode else 0.0  # also fills the cache used below
        if encode and count:
            out["text_flops"] = count_flops(encode)
        with PeakMemory(device) as memory:
            trainer.model_inference(test)  # warm-up (the class side is cached: this is the image side)
        out["image_s"] = timed(lambda: trainer.model_inference(test), device, args.eval_repeat) / batch
        out["eval_mib"] = memory.peak
        if count:
            out["image_flops"] = count_flops(lambda: trainer.model_inference(test)) / batch
        if hasattr(trainer.model, "clear_text_cache"):
            trainer.model.clear_text_cache()
    return out


def matmul_rate(device, shapes):
    """Best fp32 matmul rate (FLOP/s) over GEMM shapes met in the backbone."""
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
        a @ b
        best = max(best, 2 * m * k * n / timed(lambda: a @ b, device, 5))
    return best


def limit_malloc_caching():
    """Large CPU blocks straight from/to the OS, so the resident set follows what tensors hold (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 16)  # M_TRIM_THRESHOLD


def _num(x):
    return f"{x:.3g}" if x < 1000 else f"{x:.0f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="ViT-B/16",
                    help="a paper name (OpenAI's architecture), custom (with --clip-path) or an open_clip model name")
    ap.add_argument("--pretrained", default="",
                    help="open_clip tag whose activation and preprocessing apply (weights stay random: no download)")
    ap.add_argument("--trainers", nargs="+", default=list(BENCHMARKS), choices=list(BENCHMARKS))
    ap.add_argument("--classes", nargs="+", type=int, default=[10, 100, 1000])
    ap.add_argument("--max-train-classes", type=int, default=None,
                    help="time training only up to this many classes (upstream's 1000-class step holds ~30 GB "
                         "of fp32 activations at batch 4, ALIGN's ~120 GB)")
    ap.add_argument("--batch", type=int, default=4, help="training batch (official MaPLe-family yamls: 4)")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps (median), after one warm-up")
    ap.add_argument("--eval-batch", type=int, default=8, help="images per timed evaluation forward")
    ap.add_argument("--eval-repeat", type=int, default=2, help="timed evaluation forwards (median)")
    ap.add_argument("--test-images", type=int, default=50000,
                    help="test-set size over which ours encodes the classes once (ImageNet val: 50000)")
    ap.add_argument("--prec", default="fp32", help="TRAINER.<node>.PREC for every trainer (fp32, fp16, amp)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--clip-path", default="",
                    help="a CLIP file to load instead of random weights (OpenAI-format; --backbone custom: any; an "
                         "open_clip name: its open_clip checkpoint)")
    ap.add_argument("--opts", nargs="*", default=[], help="KEY VALUE config overrides for every trainer")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    limit_malloc_caching()
    import open_clip

    import trainers.base as trainer_base
    from models.clip import AVAILABLE_BACKBONES, open_clip_backbone

    if args.clip_path:
        from models.clip import load_clip

        visual = load_clip(args.backbone, args.clip_path, "fp32", "cpu", args.pretrained).visual
        size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
        width, patch = visual.conv1.weight.shape[0], visual.conv1.weight.shape[-1]
        del visual
    else:
        trainer_base.load_clip = random_clip_factory(args.backbone, args.pretrained)
        backbone = open_clip_backbone(args.backbone, args.pretrained)
        vision = (backbone.config if backbone else open_clip.get_model_config(AVAILABLE_BACKBONES[args.backbone]))[
            "vision_cfg"]
        size, width, patch = vision["image_size"], vision["width"], vision["patch_size"]
    tokens = (size // patch) ** 2 + 1
    rate = matmul_rate(device, [(args.batch * tokens, width, 4 * width), (args.eval_batch * tokens, 4 * width, width),
                                (2048, 2048, 2048)])
    backbone = args.backbone + (f" {args.pretrained}" if args.pretrained else "") + (
        f" ({args.clip_path})" if args.clip_path else "")
    print(f"# {device} ({torch.get_num_threads()} threads), best fp32 matmul {rate / 1e9:.0f} GFLOP/s; {backbone}, "
          f"PREC {args.prec}, train batch {args.batch}, test set {args.test_images} images; torch {torch.__version__}",
          flush=True)
    header = ("trainer", "classes", "train s/step upstream", "ours", "speed-up", "x floor up/ours",
              "eval ms/img upstream", "ours", "speed-up", "x floor up/ours", "peak MiB train up/ours",
              "peak MiB eval up/ours")
    rows = []
    for name in args.trainers:
        for classes in args.classes:
            train_step = args.max_train_classes is None or classes <= args.max_train_classes
            result, test_batch = {}, None
            for upstream in (True, False):
                trainer = build_trainer(name, classes, args, device, upstream, size)
                test_batch = trainer.cfg.DATALOADER.TEST.BATCH_SIZE  # the official yaml's
                result[upstream] = measure(trainer, size, args, device, count=not upstream, train_step=train_step)
                del trainer
            up, ours = result[True], result[False]
            eval_up = up["image_s"] + up["text_s"] / test_batch
            eval_ours = ours["image_s"] + ours["text_s"] / args.test_images
            floor_eval = (ours["image_flops"] + ours.get("text_flops", 0) / args.test_images) / rate
            row = [name, classes]
            if "train_s" in ours:
                floor_train = ours["train_flops"] / rate
                row += [_num(up["train_s"]), _num(ours["train_s"]), f"{up['train_s'] / ours['train_s']:.2f}x",
                        f"{up['train_s'] / floor_train:.1f} / {ours['train_s'] / floor_train:.1f}"]
            else:
                row += ["-"] * 4
            row += [_num(1e3 * eval_up), _num(1e3 * eval_ours), f"{eval_up / eval_ours:.2f}x",
                    f"{eval_up / floor_eval:.1f} / {eval_ours / floor_eval:.1f}"]
            row += [f"{up['train_mib']:.0f} / {ours['train_mib']:.0f}" if "train_mib" in ours else "-",
                    f"{up['eval_mib']:.0f} / {ours['eval_mib']:.0f}"]
            rows.append(row)
            print(" | ".join(map(str, row)), flush=True)
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    if "ALIGN" in args.trainers:
        entries = resolve_config(["--trainer", "ALIGN"]).TRAINER.MMP.TOKEN_OT_CHUNK
        print(f"\nALIGN token-level OT runs in chunks of TRAINER.MMP.TOKEN_OT_CHUNK = {entries} similarity entries "
              f"({entries * 4 / 2 ** 20:.0f} MiB per fp32 tensor), whatever the numbers of images and classes.")

    return rows


if __name__ == "__main__":
    main()
