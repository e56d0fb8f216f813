"""CLIP loading through open_clip: OpenAI's weights exactly as OpenAI ships them (QuickGELU, OpenAI's fp16
mixed storage), and open_clip's other CLIPs from their model configs.

``MODEL.BACKBONE.NAME`` takes the names the papers use; the weights come from ``MODEL.BACKBONE.PATH``
(OpenAI's JIT archive or an OpenAI-format state dict) or are downloaded once into a cache.
``custom`` as the name accepts any OpenAI-format file and takes the architecture from its shapes.
An open_clip model name (``ViT-B-16``, ``ViT-L-14``, ``RN50`` ...) with ``MODEL.BACKBONE.PRETRAINED`` (a tag of
open_clip's pretrained registry: laion2b_s34b_b88k, datacomp_xl_s13b_b90k, metaclip_fullcc, dfn2b ...) is built
by ``open_clip.create_model``, which downloads the weights into open_clip's cache; with ``MODEL.BACKBONE.PATH``
it reads a local open_clip checkpoint instead (offline). Architecture, activation, context length and
preprocessing come from the model's config (and the tag's); see ``open_clip_backbone``.
"""
import difflib
import math
import os
import re
import warnings
from dataclasses import asdict, dataclass

import open_clip
import torch
from open_clip.model import CLIP, CLIPTextCfg, build_model_from_openai_state_dict
from open_clip.modified_resnet import ModifiedResNet
from open_clip.pretrained import (download_pretrained, get_pretrained_cfg, is_pretrained_cfg,
                                 list_pretrained_tags_by_model)
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import PreprocessCfg, merge_preprocess_dict
from open_clip.transformer import VisionTransformer

from engine.config import get_cfg_default
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


OPENAI_TAG = "openai"
SUPPORTED_OPEN_CLIP = ("vlprompt's encoders hook open_clip CLIPs with a VisionTransformer or ModifiedResNet image "
                       "tower and the causal CLIP text transformer with CLIP's BPE tokenizer (e.g. ViT-B-32, ViT-B-16, "
                       "ViT-L-14, ViT-H-14, ViT-g-14, ViT-bigG-14, RN50, RN101 and their -quickgelu variants)")


def _unchosen_normalisations():
    """Normalisation constants a config carries without having chosen them for the backbone: Dassl's default
    (ImageNet) and OpenAI CLIP's, which every shipped trainer yaml sets."""
    dassl = get_cfg_default().INPUT
    return ((dassl.PIXEL_MEAN, dassl.PIXEL_STD), (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD))


def unsupported_reasons(model_cfg):
    """Why our encoders cannot hook the open_clip model of ``model_cfg`` (empty: they can). They read the
    OpenAI-layout modules of open_clip's ``CLIP`` (conv1 / class token / ln_pre / blocks / ln_post / proj, or the
    ResNet with its attention pool; token embedding / causal blocks / ln_final / text_projection at the end token)."""
    v, t = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    reasons = []
    if v.get("timm_model_name"):
        reasons.append(f"its image tower is the timm model {v['timm_model_name']}")
    if v.get("attentional_pool"):
        reasons.append("its image tower pools with an attentional pooler")
    if v.get("pool_type", "tok") != "tok" or v.get("final_ln_after_pool"):
        reasons.append("its image feature is not the class token's")
    if "multimodal_cfg" in model_cfg:
        reasons.append("it is a CoCa captioner")
    if t.get("hf_model_name"):
        reasons.append(f"its text tower is the Hugging Face model {t['hf_model_name']}")
    elif model_cfg.get("custom_text"):
        reasons.append("its text tower is a separate TextTransformer module (custom_text)")
    if t.get("no_causal_mask"):
        reasons.append("its text tower is not causal (SigLIP-style)")
    if t.get("pool_type", "argmax") != "argmax" or t.get("embed_cls"):
        reasons.append(f"its text feature is pooled by {t.get('pool_type', 'a class token')!r}, not at the end token")
    if t.get("proj_bias") or t.get("proj_type", "linear") != "linear":
        reasons.append("its text projection is not a plain matrix")
    if t.get("hf_tokenizer_name") or t.get("tokenizer_kwargs") or t.get("tokenizer_mode"):
        reasons.append(f"its tokenizer is not CLIP's BPE ({t.get('hf_tokenizer_name') or t.get('tokenizer_kwargs')})")
    elif t.get("vocab_size", CLIPTextCfg.vocab_size) != bpe_vocab_size():
        reasons.append(f"its vocabulary ({t['vocab_size']}) is not CLIP's BPE ({bpe_vocab_size()})")
    return reasons


def bpe_vocab_size():
    tokenize("")  # builds the tokenizer once
    return len(_tokenizer.encoder)


def supported_open_clip_models():
    return [m for m in open_clip.list_models() if not unsupported_reasons(open_clip.get_model_config(m))]


@dataclass(frozen=True)
class OpenClipBackbone:
    """An open_clip model name and its weights: ``tag`` of open_clip's pretrained registry (downloaded by open_clip),
    ``path`` a local open_clip checkpoint, or both (the file holds that tag's weights, whose activation and
    preprocessing then apply)."""

    model: str
    tag: str = ""
    path: str = ""

    @property
    def config(self):
        return open_clip.get_model_config(self.model)

    @property
    def tag_cfg(self):
        return get_pretrained_cfg(self.model, self.tag) if self.tag else {}

    @property
    def quick_gelu(self):
        """QuickGELU when the model config or the tag says so (open_clip registers some QuickGELU-trained weights,
        e.g. MetaCLIP and DFN, under the GELU config too, and only warns)."""
        return bool(self.config.get("quick_gelu", False) or self.tag_cfg.get("quick_gelu", False))

    @property
    def preprocess(self):
        """open_clip's preprocessing for these weights (as ``create_model`` merges it): mean, std, size, ..."""
        cfg = merge_preprocess_dict(asdict(PreprocessCfg()), self.tag_cfg)
        cfg["size"] = self.config["vision_cfg"]["image_size"]
        return cfg

    @property
    def label(self):
        return f"{self.model} ({self.tag or os.path.basename(self.path) or 'random weights'})"


def _paper_name(model):
    paper = {v: k for k, v in AVAILABLE_BACKBONES.items()}
    return paper.get(model) or paper.get(model.removesuffix("-quickgelu"))


def open_clip_backbone(name, pretrained="", path=""):
    """The open_clip backbone that ``MODEL.BACKBONE.NAME/PRETRAINED/PATH`` name, or None for OpenAI's weights (a
    paper name with no tag, or custom), which load as before. Unknown names, architectures our encoders cannot
    hook and tags open_clip does not register are refused here with one line."""
    tag = (pretrained or "").strip()
    if name == CUSTOM_BACKBONE:
        if tag:
            raise UserError("MODEL.BACKBONE.PRETRAINED is an open_clip tag; MODEL.BACKBONE.NAME custom takes none "
                            "(it reads an OpenAI-format file from MODEL.BACKBONE.PATH)")
        return None
    if name in AVAILABLE_BACKBONES and tag in ("", OPENAI_TAG):
        return None
    model = AVAILABLE_BACKBONES.get(name, name)
    if model not in open_clip.list_models():
        choices = list(AVAILABLE_BACKBONES) + [CUSTOM_BACKBONE]
        close = difflib.get_close_matches(name, choices + supported_open_clip_models(), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UserError(f"unknown MODEL.BACKBONE.NAME {name!r}.{hint} Available: {', '.join(choices)}, or an open_clip "
                        "model name with MODEL.BACKBONE.PRETRAINED (e.g. ViT-B-16 with laion2b_s34b_b88k)")
    reasons = unsupported_reasons(open_clip.get_model_config(model))
    if reasons:
        raise UserError(f"MODEL.BACKBONE.NAME {name} is not supported: {', '.join(reasons)}; {SUPPORTED_OPEN_CLIP}")
    if tag == OPENAI_TAG:
        paper = _paper_name(model)
        raise UserError(f"OpenAI's weights load under their paper name: MODEL.BACKBONE.NAME {paper or '(its name)'} "
                        "with MODEL.BACKBONE.PRETRAINED empty (OpenAI's fp16 storage and QuickGELU, as OpenAI ships "
                        "them)")
    if tag and not is_pretrained_cfg(model, tag):
        tags = [t for t in list_pretrained_tags_by_model(model) if t != OPENAI_TAG]
        raise UserError(f"MODEL.BACKBONE.PRETRAINED {tag!r} is not an open_clip tag of {model}; its tags: "
                        f"{', '.join(tags) or 'none (pass a local checkpoint as MODEL.BACKBONE.PATH)'}")
    return OpenClipBackbone(model, tag, os.path.abspath(os.path.expanduser(path)) if path else "")


def _close(a, b):
    return len(a) == len(b) and all(math.isclose(x, y, abs_tol=1e-6) for x, y in zip(a, b))


def resolve_input_normalisation(cfg):
    """Config resolution for an open_clip backbone (train.py, before the trainer's ``resolve_cfg``): refuse an
    unsupported one before any work, and let INPUT.PIXEL_MEAN/PIXEL_STD follow the model's preprocessing unless the
    config chose other values than Dassl's default or OpenAI's (``_unchosen_normalisations``)."""
    b = cfg.MODEL.BACKBONE
    backbone = open_clip_backbone(b.NAME, b.PRETRAINED, b.PATH) if b.NAME else None  # no name: refused at loading
    if backbone is None:
        return
    pre = backbone.preprocess
    mean, std = list(pre["mean"]), list(pre["std"])
    current = list(cfg.INPUT.PIXEL_MEAN), list(cfg.INPUT.PIXEL_STD)
    if _close(current[0], mean) and _close(current[1], std):
        return
    if any(_close(current[0], m) and _close(current[1], s) for m, s in _unchosen_normalisations()):
        print(f"Note: INPUT.PIXEL_MEAN {current[0]} -> {mean}, INPUT.PIXEL_STD {current[1]} -> {std}: the "
              f"preprocessing of {backbone.label} (set them explicitly to other values to keep those)")
        cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD = mean, std


def build_open_clip(backbone, precision="fp32", device="cpu", weights=None):
    """``open_clip.create_model`` for ``backbone`` with its activation; ``weights`` a registry tag (open_clip
    downloads it into its cache), a checkpoint file, or None (random weights: the benchmark). fp16 is open_clip's
    "fp16", the same mixed storage as OpenAI's (fp16 matmul weights, fp32 LayerNorm and embeddings)."""
    model = open_clip.create_model(backbone.model, pretrained=weights, precision="fp16" if precision == "fp16" else
                                   "fp32", device=device, force_quick_gelu=backbone.quick_gelu)
    if not (isinstance(model, CLIP) and isinstance(model.visual, (VisionTransformer, ModifiedResNet))):
        raise UserError(f"{backbone.label} built as {type(model).__name__}/{type(model.visual).__name__}; "
                        f"{SUPPORTED_OPEN_CLIP}")
    return model


def _one_line(e, limit=240):
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def load_open_clip(backbone, precision, device):
    if backbone.path and not os.path.isfile(backbone.path):
        raise UserError(f"MODEL.BACKBONE.PATH {backbone.path} does not exist (expected an open_clip checkpoint "
                        f"of {backbone.model})")
    if not (backbone.path or backbone.tag):
        tags = [t for t in list_pretrained_tags_by_model(backbone.model) if t != OPENAI_TAG]
        raise UserError(f"MODEL.BACKBONE.NAME {backbone.model} needs its weights: MODEL.BACKBONE.PRETRAINED TAG "
                        f"(open_clip's: {', '.join(tags) or 'none'}) or MODEL.BACKBONE.PATH to an open_clip checkpoint")
    try:
        return build_open_clip(backbone, precision, device, backbone.path or backbone.tag)
    except UserError:
        raise
    except Exception as e:
        if backbone.path:
            raise UserError(f"cannot load {backbone.path} as {backbone.model} weights ({_one_line(e)}); expected an "
                            "open_clip checkpoint of that architecture (MODEL.BACKBONE.NAME names it)") from e
        raise UserError(f"cannot get the open_clip weights {backbone.model} {backbone.tag} ({_one_line(e)}); without "
                        f"network, fetch them elsewhere (open_clip.create_model({backbone.model!r}, "
                        f"pretrained={backbone.tag!r})) and pass the file as MODEL.BACKBONE.PATH") from e


def clip_weights_file(name, pretrained="", path=""):
    """The local file the weights of a backbone load from (to hash or copy it): PATH, OpenAI's cached download, or
    the file open_clip's registry fetched into its cache for the tag."""
    backbone = open_clip_backbone(name, pretrained, path)
    if backbone is None:
        return resolve_weights_file(name, path)
    if backbone.path or not backbone.tag:
        return backbone.path
    return download_pretrained(backbone.tag_cfg)


def activation_name(transformer):
    """The MLP activation of a tower's blocks (GELU or QuickGELU), as built."""
    return type(transformer.resblocks[0].mlp.gelu).__name__ if len(transformer.resblocks) else "?"


def describe_open_clip(backbone, model, mean, std):
    """One log line: what the model's config made of the open_clip backbone, and whether the run's normalisation
    (``mean``, ``std``: INPUT.PIXEL_MEAN/STD) is its preprocessing's."""
    v = model.visual
    tower = (f"ViT width {v.conv1.weight.shape[0]} x {len(v.transformer.resblocks)} layers, "
             f"{activation_name(v.transformer)}" if isinstance(v, VisionTransformer) else "ResNet")
    pre = backbone.preprocess
    same = _close(list(mean), pre["mean"]) and _close(list(std), pre["std"])
    norm = ("INPUT.PIXEL_MEAN/STD are its preprocessing's" if same else
            f"Warning: INPUT.PIXEL_MEAN {list(mean)} / PIXEL_STD {list(std)} differ from its preprocessing's "
            f"{list(pre['mean'])} / {list(pre['std'])}")
    return (f"open_clip {backbone.label}: image {v.image_size} ({tower}), text width "
            f"{model.ln_final.weight.shape[0]} x {len(model.transformer.resblocks)} layers, {activation_name(model.transformer)}, context "
            f"{model.positional_embedding.shape[0]}; {norm}")


_CPU_FP16_NOTED = []


def load_clip(name, path="", precision="fp16", device="cpu", pretrained=""):
    """Frozen CLIP in eval mode. fp16 = OpenAI's mixed storage (fp16 matmul weights, fp32 LayerNorm and
    embeddings), on every device (PyTorch has half-precision CPU kernels; slow there, so a one-time note);
    fp32 and amp = everything fp32 (amp adds autocast in the trainer). ``pretrained``: an open_clip tag
    (``open_clip_backbone``)."""
    backbone = open_clip_backbone(name, pretrained, path)
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "fp16" and device.type == "cpu" and not _CPU_FP16_NOTED:
        _CPU_FP16_NOTED.append(True)
        print("Note: PREC fp16 on a CPU runs in fp16 as on a GPU, but much slower than fp32 there "
              "(use PREC fp32 or amp for speed on a CPU)")
    if backbone is not None:
        return freeze(load_open_clip(backbone, precision, device))
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
    return freeze(model.to(device))


def freeze(model):
    model.eval()
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
