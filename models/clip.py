"""CLIP loading through open_clip, OpenAI architecture exactly (QuickGELU, OpenAI's fp16 mixed storage).

``MODEL.BACKBONE.NAME`` takes the names the papers use; the weights come from ``MODEL.BACKBONE.PATH``
(OpenAI's JIT archive or an OpenAI-format state dict) or are downloaded once into a cache.
``custom`` as the name accepts any OpenAI-format file and takes the architecture from its shapes.
"""
import os
import re
import warnings

import open_clip
import torch
from open_clip.model import build_model_from_openai_state_dict
from open_clip.pretrained import get_pretrained_cfg
from open_clip.tokenizer import SimpleTokenizer

from engine.utils.download import download_url
from engine.utils.tools import UserError

# paper name -> open_clip model name (its model config is the reference architecture)
AVAILABLE_BACKBONES = {
    "RN50": "RN50", "RN101": "RN101", "RN50x4": "RN50x4", "RN50x16": "RN50x16", "RN50x64": "RN50x64",
    "ViT-B/32": "ViT-B-32", "ViT-B/16": "ViT-B-16", "ViT-L/14": "ViT-L-14", "ViT-L/14@336px": "ViT-L-14-336",
}
CUSTOM_BACKBONE = "custom"
PRECISIONS = ("fp16", "fp32", "amp")
_tokenizer = None


def tokenize(texts, context_length=77):
    """CLIP BPE ids, SOT 49406 ... EOT 49407, zero padded to ``context_length`` (lower-cased like OpenAI's)."""
    global _tokenizer
    if _tokenizer is None:
        _tokenizer = SimpleTokenizer(context_length=context_length)
    if isinstance(texts, str):
        texts = [texts]
    return _tokenizer(texts, context_length=context_length)


def bpe_length(text):
    """Number of BPE tokens of ``text`` (no start/end tokens)."""
    tokenize("")  # builds the tokenizer once
    return len(_tokenizer.encode(text))


def cache_dir():
    return os.environ.get("VLPROMPT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "vlprompt", "clip"))


def resolve_weights_file(name, path=""):
    """A local file with the weights for ``name``: ``path`` if given, else the cached/downloaded file."""
    if path:
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isfile(path):
            raise UserError(f"MODEL.BACKBONE.PATH {path} does not exist (expected an OpenAI CLIP .pt file)")
        return path
    if name == CUSTOM_BACKBONE:
        raise UserError("MODEL.BACKBONE.NAME custom needs MODEL.BACKBONE.PATH (a CLIP file in OpenAI format)")
    url = get_pretrained_cfg(AVAILABLE_BACKBONES[name], "openai")["url"]
    sha = re.search(r"/([0-9a-f]{64})/", url)
    dst = os.path.join(cache_dir(), os.path.basename(url))
    try:
        return download_url(url, dst, sha256=sha.group(1) if sha else None, desc=f"CLIP {name}")
    except UserError as e:
        raise UserError(f"CLIP weights for {name} are not in {cache_dir()} and could not be downloaded ({e}); "
                        f"download {url} elsewhere and pass MODEL.BACKBONE.PATH /path/to/{os.path.basename(url)}")


def read_openai_state_dict(path):
    try:  # OpenAI's distributed files are TorchScript archives
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, still the only reader
            sd = dict(torch.jit.load(path, map_location="cpu").state_dict())
        sd.pop("attn_mask", None)  # a scripted module may carry the (rebuilt) causal mask buffer
        return sd
    except (RuntimeError, ValueError):
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols of a file we refuse anyway
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # never torch's advice to retry with weights_only=False: that would run code from an untrusted file
        why = ("it holds pickled Python objects besides tensors, which are not loaded (unpickling them could run "
               "code)" if "weights_only" in str(e) or "Unsupported global" in str(e) else
               f"not a TorchScript archive or a PyTorch file of tensors ({type(e).__name__})")
        raise UserError(f"cannot read CLIP weights from {path}: {why}; expected OpenAI's CLIP .pt file or a "
                        "state dict of tensors with its key names") from e
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or "token_embedding.weight" not in {k.replace("module.", "", 1) for k in sd}:
        raise UserError(f"{path} is not a CLIP checkpoint in OpenAI format (no token_embedding.weight)")
    return {k.replace("module.", "", 1): v for k, v in sd.items()}


def describe_architecture(sd):
    """The architecture numbers a state dict implies, in open_clip's model-config terms."""
    arch = {"embed_dim": sd["text_projection"].shape[1], "context_length": sd["positional_embedding"].shape[0],
            "vocab_size": sd["token_embedding.weight"].shape[0], "text_width": sd["ln_final.weight"].shape[0],
            "text_layers": len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks")})}
    if "visual.proj" in sd:
        patch = sd["visual.conv1.weight"].shape[-1]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        arch.update(vision_width=sd["visual.conv1.weight"].shape[0], patch_size=patch, image_size=patch * grid,
                    vision_layers=len([k for k in sd if k.startswith("visual.") and k.endswith("attn.in_proj_weight")]))
    else:
        arch.update(vision_width=sd["visual.layer1.0.conv1.weight"].shape[0], patch_size=None,
                    image_size=round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5) * 32,
                    vision_layers=[len({k.split(".")[2] for k in sd if k.startswith(f"visual.layer{b}.")})
                                   for b in (1, 2, 3, 4)])
    return arch


def expected_architecture(name):
    cfg = open_clip.get_model_config(AVAILABLE_BACKBONES[name])
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    layers = v["layers"]
    return {"embed_dim": cfg["embed_dim"], "context_length": t["context_length"], "vocab_size": t["vocab_size"],
            "text_width": t["width"], "text_layers": t["layers"], "vision_width": v["width"],
            "patch_size": v.get("patch_size"), "image_size": v["image_size"],
            "vision_layers": list(layers) if isinstance(layers, (list, tuple)) else layers}


_CPU_FP16_NOTED = []


def load_clip(name, path="", precision="fp16", device="cpu"):
    """Frozen CLIP in eval mode. fp16 = OpenAI's mixed storage (fp16 matmul weights, fp32 LayerNorm and
    embeddings), on every device (PyTorch has half-precision CPU kernels; slow there, so a one-time note);
    fp32 and amp = everything fp32 (amp adds autocast in the trainer)."""
    if name not in AVAILABLE_BACKBONES and name != CUSTOM_BACKBONE:
        from engine.registry import unknown_choice_message

        raise UserError(unknown_choice_message("MODEL.BACKBONE.NAME", name,
                                               list(AVAILABLE_BACKBONES) + [CUSTOM_BACKBONE]))
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "fp16" and device.type == "cpu" and not _CPU_FP16_NOTED:
        _CPU_FP16_NOTED.append(True)
        print("Note: PREC fp16 on a CPU runs in fp16 as on a GPU, but much slower than fp32 there "
              "(use PREC fp32 or amp for speed on a CPU)")
    weights = resolve_weights_file(name, path)
    sd = read_openai_state_dict(weights)
    found = describe_architecture(sd)
    if name != CUSTOM_BACKBONE:
        expected = expected_architecture(name)
        diff = [f"{k} {found[k]} (expected {expected[k]})" for k in expected if found[k] != expected[k]]
        if diff:
            raise UserError(f"{weights} does not hold {name} weights: {', '.join(diff)}; "
                            f"set MODEL.BACKBONE.NAME to the file's architecture (or custom)")
    # build_model_from_openai_state_dict mirrors OpenAI's clip.build_model: fp16 matmul weights, then load
    model = build_model_from_openai_state_dict(dict(sd), cast_dtype=torch.float16)
    if precision != "fp16":
        model.float()
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def require_vit(clip_model, method, why="visual prompts"):
    """Refuse a ResNet image tower for a method that prompts the ViT's tokens (one line)."""
    if getattr(clip_model.visual, "class_embedding", None) is None:
        raise UserError(f"{method} needs a ViT backbone ({why}); MODEL.BACKBONE.NAME is a ResNet CLIP")


def check_depth(key, value, layers, minimum=1):
    """A prompt depth (or layer count) must lie in minimum..layers of the backbone."""
    if not minimum <= value <= layers:
        raise UserError(f"{key} must be between {minimum} and {layers} (the backbone's layers), got {value}")
