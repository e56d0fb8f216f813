"""PLOT and PLOT++ (docs/design/plot.md): N text prompts per class matched to a set of image features by
entropic optimal transport; the class score is the transport-weighted cosine similarity.

* ``PLOT`` (official ``plot-coop``, §3): N CoOp-style contexts (one per prompt, shared by the classes); the
  local features are CLIP's ResNet attention pool queried at every grid position (``ImageEncoder(...,
  return_tokens=True)``; position 0 = the usual image embedding). ``VIT_LOCAL_FEATURES True`` (ours) takes a
  ViT's projected patch tokens instead (the official code is ResNet-only, Q8).
* ``PLOTPP`` (official ``plot-pp``, §5): M visual prompt sets appended to the ViT's input (M image passes,
  their CLS features are the image's set) and N text prompts initialised from four dataset templates, trained
  in two stages (``MODEL_UPD vision``, then ``joint`` from the stage-1 checkpoint ``PRETRAIN_DIR``, §8).

Both: sim[b, k, m, n] = cos(image feature m, prompt n of class k); plan T = Sinkhorn(exp(-(1 - sim) / EPS),
1/M rows, 1/N columns) without gradient, all problems of one forward pooled into one stopping group (§4,
Q1: an image's logits depend on its batch, as officially; ``OT_STOP`` image/problem removes that);
logits = scale * sum T * sim (+ scale * global cosine: PLOT on ImageNet, Q9; PLOT++ ``TRADE_OFF``). The
solver is models/sinkhorn.py (device-side stopping, ``OT_SYNC_EVERY``; no host sync per iteration).

Shared helpers other trainers may use (``OTDiagnosticsHooks``, for ``TEST.OT_DIAGNOSTICS``, is in trainers/base.py),
``transport_scores`` and ``official_schedule`` (the shots -> epochs rule of both train.py, Q11).
"""
import os
from collections import OrderedDict

import torch
import torch.nn as nn

from engine import TRAINER_REGISTRY
from engine.checkpoint import load_checkpoint
from engine.utils.tools import UserError
from models import tokenize
from models.clip import bpe_length, require_vit
from models.encoders import SharedPrefix
from models.prompted_clip import PromptedCLIP, normalize
from models.prompts import common_prefix_length, context_from_words, embed_class_prompts, normal_prompt
from models.sinkhorn import sinkhorn

from .base import OTDiagnosticsHooks, PromptTrainer

# ----------------------------------------------------------------------------------------------------
# Shared by the OT trainers
# ----------------------------------------------------------------------------------------------------

# our keys for the OT stage (the defaults are the official hard-coded values, §4)
OT_DEFAULTS = {"EPS": 0.1, "OT_MAX_ITER": 100, "OT_THRESHOLD": 0.01, "OT_STOP": "batch", "OT_FP32": False,
               "OT_LOG_DOMAIN": False, "OT_SYNC_EVERY": 8, "EPOCH_OVERRIDE": True}
# OT_STOP -> how many batch dims of the (B, K) problems pool into one stopping group
OT_STOP_GROUPS = {"batch": 2, "image": 1, "problem": 0}
# the official train.py's train batch for these datasets (Q11)
SMALL_BATCH_DATASETS = ("OxfordFlowers", "FGVCAircraft", "StanfordCars")


def official_schedule(shots, dataset):
    """Epochs the official PLOT / PLOT++ train.py sets after every config source (§7, Q11)."""
    if dataset == "ImageNet":
        return 50
    return 50 if shots == 1 else 100 if shots in (2, 4) else 200


def resolve_official_schedule(cfg, node):
    """``EPOCH_OVERRIDE True``: OPTIM.MAX_EPOCH and the small datasets' train batch as the official train.py
    rewrites them (user values are ignored there); each change is printed."""
    if not cfg.TRAINER[node].EPOCH_OVERRIDE:
        return
    why = (f"the official train.py sets it from DATASET.NUM_SHOTS and DATASET.NAME (TRAINER.{node}.EPOCH_OVERRIDE "
           "False keeps the config's value)")
    epochs = official_schedule(cfg.DATASET.NUM_SHOTS, cfg.DATASET.NAME)
    if cfg.OPTIM.MAX_EPOCH != epochs:
        print(f"Warning: OPTIM.MAX_EPOCH {cfg.OPTIM.MAX_EPOCH} -> {epochs}: {why}")
        cfg.OPTIM.MAX_EPOCH = epochs
    if cfg.DATASET.NAME in SMALL_BATCH_DATASETS and cfg.DATALOADER.TRAIN_X.BATCH_SIZE != 32:
        print(f"Warning: DATALOADER.TRAIN_X.BATCH_SIZE {cfg.DATALOADER.TRAIN_X.BATCH_SIZE} -> 32: {why}")
        cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 32


def check_ot_options(c, node):
    if c.OT_STOP not in OT_STOP_GROUPS:
        raise UserError(f"TRAINER.{node}.OT_STOP must be one of {', '.join(OT_STOP_GROUPS)}, got {c.OT_STOP!r}")
    if c.EPS <= 0 or c.OT_MAX_ITER < 1 or c.OT_SYNC_EVERY < 1 or c.OT_THRESHOLD < 0:
        raise UserError(f"TRAINER.{node}: EPS, OT_MAX_ITER and OT_SYNC_EVERY must be positive, OT_THRESHOLD >= 0")


def transport_scores(local, text, c, diagnostics=None, node="PLOT", check_nan=True):
    """OT scores (B, K): local (B, M, d) and text (N, K, d) normalised, ``c`` the trainer's config node.

    One Sinkhorn call for all B*K problems (cost 1 - cos, uniform marginals 1/M and 1/N); the plan is a
    constant for backprop (§4) and the score sum(T * sim) carries the gradient. A NaN plan (fp16 kernels that
    underflow, Q3) stops with one line where the official forward returns None and crashes later (Q4);
    ``check_nan=False`` (training) leaves it to the engine's NaN-loss stop, which names the same fix."""
    sim = torch.einsum("bmd,nkd->bkmn", local, text)
    m, n = sim.shape[-2:]
    plan, iterations = sinkhorn(1.0 - sim, 1.0 / m, 1.0 / n, c.EPS, max_iter=c.OT_MAX_ITER,
                                threshold=c.OT_THRESHOLD, stop_group_dims=OT_STOP_GROUPS[c.OT_STOP],
                                log_domain=c.OT_LOG_DOMAIN, grad=False, nan_to_kernel=False, return_iterations=True,
                                sync_every=c.OT_SYNC_EVERY)
    if diagnostics is not None:
        diagnostics.record("prompt level", plan, iterations)
    if check_nan and bool(torch.isnan(plan).any()):  # one host read per forward, not per iteration
        raise UserError(f"the transport plans of this batch contain NaN: the {sim.dtype} kernels exp(-(1 - cos) / "
                        f"{c.EPS}) underflowed; set TRAINER.{node}.OT_FP32 True (OT in fp32; docs/design/plot.md Q3)")
    return (plan * sim).sum(dim=(-2, -1))


def fp16_kernel_hint(trainer):
    """``nonfinite_hint`` of the PLOT trainers: the fp16 transport kernels are the known cause (Q3)."""
    node = trainer.config_node
    if trainer.prec == "fp16" and not trainer.trainer_cfg.OT_FP32:
        return (f"the fp16 transport kernels exp(-(1 - cos) / EPS) underflow and the plans become NaN, as in the "
                f"official fp16 code (docs/design/plot.md Q3, Q4): set TRAINER.{node}.OT_FP32 True (or PREC amp)")
    return None


class OTPromptCLIP(PromptedCLIP):
    """logits = scale * OT score of (image feature set, class prompt set) [+ scale * global cosine].

    Subclasses give ``text_features()`` (N*K rows, prompt-major: row n*K + k) and ``image_side(image)`` ->
    (feature set (B, M, d), global feature (B, d)), both unnormalised."""

    node = "PLOT"

    def __init__(self, cfg, clip_model, encoder_options=None, use_global=False):
        super().__init__(clip_model, encoder_options)
        self.cfg = cfg
        self.use_global = use_global
        self.ot_diagnostics = None  # set by OTDiagnosticsHooks during an evaluation

    def text_side(self):
        """Normalised prompt features (N, K, d) and the class feature = normalised mean of the N
        unnormalised ones (K, d) (Q14)."""
        pl = self.prompt_learner
        features = self.text_features().view(pl.n_prompts, pl.n_cls, -1)
        return normalize(features), normalize(features.mean(dim=0))

    @torch.no_grad()
    def cache_text_features(self):
        self._text_cache = self.text_side()

    def image_side(self, image):
        raise NotImplementedError

    def forward(self, image):
        cached = self.cached_text()
        text, text_global = cached if cached is not None else self.text_side()
        local, image_global = self.image_side(image)
        local, image_global = normalize(local), normalize(image_global)
        if self.cfg.OT_FP32 or torch.is_autocast_enabled(image.device.type):
            # fp16 kernels underflow for low cosines (Q3): OT_FP32 and amp run the OT stage in fp32
            with torch.autocast(image.device.type, enabled=False):
                return self.scores(local.float(), image_global.float(), text.float(), text_global.float())
        return self.scores(local, image_global, text, text_global)

    def scores(self, local, image_global, text, text_global):
        scale = self.logit_scale.exp()
        logits = scale * transport_scores(local, text, self.cfg, self.ot_diagnostics, self.node,
                                          check_nan=not self.prompt_learner.training)
        if self.use_global:
            logits = logits + scale * image_global @ text_global.t()
        return logits


def prompt_major_shared_prefix(length, n_prompts, n_cls, device):
    """Rows n*K + k of prompt n share their first ``length`` input tokens (start token, context, common words)."""
    if n_cls < 2 or length < 1:
        return None
    rows = torch.arange(n_prompts * n_cls, device=device)
    return SharedPrefix(length, row_group=rows // n_cls, group_rows=torch.arange(n_prompts, device=device) * n_cls)


def drop_fixed_token_buffers(state_dict):
    """The official whole-model PLOT++ files hold ``prompt_learner.*`` and all of CLIP: keep the prompt tensors;
    the fixed token embeddings are rebuilt for the current classes, never loaded (§11)."""
    if any(k.startswith("prompt_learner.") for k in state_dict):
        state_dict = OrderedDict((k[len("prompt_learner."):], v) for k, v in state_dict.items()
                                 if k.startswith("prompt_learner."))
    return OrderedDict((k, v) for k, v in state_dict.items() if k not in ("token_prefix", "token_suffix"))


# ----------------------------------------------------------------------------------------------------
# PLOT (plot-coop)
# ----------------------------------------------------------------------------------------------------

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")
GLOBAL_LOGITS = ("imagenet", "always", "never")


class PLOTPromptLearner(nn.Module):
    """``ctx`` (N, L, D): one context per prompt, shared by the classes (official key). Buffers
    ``token_prefix`` (K, 1, D) and ``token_suffix`` (K, 76 - L, D) hold each class's fixed parts once (the
    official code stores them N times); prompts are assembled prompt-major, row n*K + k = [SOS, ctx[n], name
    of k, ".", EOT] (or CoOp's middle/front order with ctx[n], Q7)."""

    def __init__(self, cfg, classnames, text_encoder):
        super().__init__()
        n_prompts, width = cfg.N, text_encoder.width
        device = text_encoder.positional_embedding.device
        if cfg.CTX_INIT:
            # ours (officially any CTX_INIT crashes, Q5): TAB-separated phrases, prompt n takes phrase n mod count
            phrases = [p for p in cfg.CTX_INIT.split("\t") if p.strip()]
            contexts = [context_from_words(text_encoder, p) for p in phrases]
            if len({c.shape[0] for c, _ in contexts}) > 1:
                raise UserError("TRAINER.PLOT.CTX_INIT: every TAB-separated phrase must have the same number of words "
                                "(one context length for all prompts)")
            if len(phrases) < n_prompts:
                print(f"Note: TRAINER.PLOT.CTX_INIT has {len(phrases)} phrase(s) for N = {n_prompts} prompts; prompts "
                      "with the same phrase start equal and stay equal (equal plan columns, equal gradients)")
            ctx = torch.stack([contexts[i % len(contexts)][0] for i in range(n_prompts)]).to(text_encoder.dtype)
            placeholder = contexts[0][1]
            print(f"Initial contexts: {[contexts[i % len(contexts)][1] for i in range(n_prompts)]}")
        else:
            print("Initializing a generic context")
            ctx = normal_prompt(n_prompts, cfg.N_CTX, width, dtype=text_encoder.dtype, device=device)
            placeholder = " ".join(["X"] * cfg.N_CTX)
            print(f'Initial context: "{placeholder}"')
        n_ctx = ctx.shape[1]
        print(f"Number of context words (tokens): {n_ctx}; prompts per class: {n_prompts}")
        self.ctx = nn.Parameter(ctx)
        tokens, prefix, suffix, self.name_lens = embed_class_prompts(text_encoder, classnames, placeholder, n_ctx)
        self.register_buffer("token_prefix", prefix)
        self.register_buffer("token_suffix", suffix)
        self.register_buffer("tokenized_prompts", tokens, persistent=False)
        self.n_prompts, self.n_cls, self.n_ctx = n_prompts, len(classnames), n_ctx
        self.class_token_position = cfg.CLASS_TOKEN_POSITION
        self.text_length = int(tokens.argmax(dim=-1).max()) + 1
        self.shared_prefix_length = common_prefix_length(tokens, n_ctx)

    @property
    def eot_indices(self):
        """The placeholder sentences' end tokens, per row (prompt-major); the class-token position keeps them."""
        return self.tokenized_prompts.argmax(dim=-1).repeat(self.n_prompts)

    def shared_prefix(self):
        if self.class_token_position != "end":
            return None
        return prompt_major_shared_prefix(self.shared_prefix_length, self.n_prompts, self.n_cls, self.ctx.device)

    def forward(self):
        n, k = self.n_prompts, self.n_cls
        ctx, prefix, suffix = self.ctx, self.token_prefix, self.token_suffix
        if self.class_token_position == "end":
            rows = torch.cat([prefix.unsqueeze(0).expand(n, -1, -1, -1), ctx.unsqueeze(1).expand(-1, k, -1, -1),
                              suffix.unsqueeze(0).expand(n, -1, -1, -1)], dim=2)
            return rows.flatten(0, 1)
        half = self.n_ctx // 2
        per_class = []
        for i, name_len in enumerate(self.name_lens):
            pre = prefix[i].expand(n, -1, -1)
            name, rest = suffix[i, :name_len].expand(n, -1, -1), suffix[i, name_len:].expand(n, -1, -1)
            parts = ([pre, ctx[:, :half], name, ctx[:, half:], rest] if self.class_token_position == "middle"
                     else [pre, name, ctx, rest])
            per_class.append(torch.cat(parts, dim=1))
        return torch.stack(per_class, dim=1).flatten(0, 1)


def local_feature_source(clip_model, vit_local_features):
    """"resnet" (attention-pool grid outputs, official) or "vit" (patch tokens, ours); refuse anything else."""
    visual = clip_model.visual
    if getattr(visual, "class_embedding", None) is not None:
        if not vit_local_features:
            raise UserError("PLOT's local features are the ResNet attention pool's grid outputs; this CLIP has a ViT "
                            "image tower (the official code crashes, Q8): use a ResNet backbone (RN50) or set "
                            "TRAINER.PLOT.VIT_LOCAL_FEATURES True (ours: the projected patch tokens)")
        return "vit"
    pool = getattr(visual, "attnpool", None)
    if pool is None or not all(hasattr(pool, a) for a in ("q_proj", "k_proj", "v_proj", "c_proj",
                                                          "positional_embedding")):
        raise UserError(f"PLOT needs local features from CLIP's attention pool (every grid position as a query), but "
                        f"this ResNet image tower ({type(visual).__name__}) has no CLIP attention pool "
                        f"(attnpool: {type(pool).__name__ if pool is not None else 'none'}); use an "
                        "OpenAI-architecture ResNet CLIP such as RN50")
    return "resnet"


class PLOTCLIP(OTPromptCLIP):
    node = "PLOT"

    def __init__(self, cfg, classnames, use_global, clip_model, encoder_options=None):
        source = local_feature_source(clip_model, cfg.VIT_LOCAL_FEATURES)
        super().__init__(cfg, clip_model, encoder_options, use_global)
        self.local_source = source
        self.prompt_learner = PLOTPromptLearner(cfg, classnames, self.text_encoder)

    def text_features(self):
        pl = self.prompt_learner
        return self.text_encoder(pl(), pl.eot_indices, length=pl.text_length, shared_prefix=pl.shared_prefix())

    def image_side(self, image):
        """(local features (B, HW, d), global feature (B, d)): the attention pool at the grid positions and at
        the mean token (= CLIP's image embedding, §3.3), or a ViT's patch tokens and CLS token."""
        pooled, tokens = self.image_encoder(image.to(self.dtype), return_tokens=True)
        return tokens[:, 1:], pooled


@TRAINER_REGISTRY.register()
class PLOT(OTDiagnosticsHooks, PromptTrainer):
    """Official keys under ``TRAINER.PLOT`` (§9.1) with official defaults; ours documented in the README."""

    config_node = "PLOT"
    config_defaults = {
        "N_CTX": 16, "CSC": False, "CTX_INIT": "", "PREC": "fp16", "CLASS_TOKEN_POSITION": "end", "N": 4,
        # ours: the global term's rule (Q9), ViT patch tokens as local features (Q8), the OT stage (Q1-Q3, Q11)
        "GLOBAL_LOGITS": "imagenet", "VIT_LOCAL_FEATURES": False, **OT_DEFAULTS,
    }

    @classmethod
    def resolve_cfg(cls, cfg):
        resolve_official_schedule(cfg, "PLOT")

    def nonfinite_hint(self):
        return fp16_kernel_hint(self) or super().nonfinite_hint()

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        c = cfg.TRAINER.PLOT
        if c.CSC:
            raise UserError("TRAINER.PLOT.CSC True is not supported: the official code mixes the class-specific "
                            "contexts up with the N prompts (shape error, or silently wrong when N equals the class "
                            "count, Q6); PLOT's contexts are per prompt, shared by the classes")
        if c.CLASS_TOKEN_POSITION not in CLASS_TOKEN_POSITIONS:
            raise UserError(f"TRAINER.PLOT.CLASS_TOKEN_POSITION must be one of {', '.join(CLASS_TOKEN_POSITIONS)}")
        if c.GLOBAL_LOGITS not in GLOBAL_LOGITS:
            raise UserError(f"TRAINER.PLOT.GLOBAL_LOGITS must be one of {', '.join(GLOBAL_LOGITS)}, got "
                            f"{c.GLOBAL_LOGITS!r}")
        if c.N < 1 or c.N_CTX < 1:
            raise UserError("TRAINER.PLOT.N and TRAINER.PLOT.N_CTX must be positive")
        check_ot_options(c, "PLOT")

    def build_model(self):
        c = self.trainer_cfg
        imagenet = self.cfg.DATASET.NAME == "ImageNet"
        use_global = c.GLOBAL_LOGITS == "always" or (c.GLOBAL_LOGITS == "imagenet" and imagenet)
        if use_global:
            print("Adding the global logits (attention-pool embedding x mean prompt feature) to the OT logits"
                  + (" (the official rule for ImageNet, Q9)" if c.GLOBAL_LOGITS == "imagenet" else ""))
        self.build_custom_clip(PLOTCLIP, c, self.dm.dataset.classnames, use_global)

    def adapt_checkpoint(self, name, state_dict):
        return drop_fixed_token_buffers(state_dict)


# ----------------------------------------------------------------------------------------------------
# PLOT++ (plot-pp)
# ----------------------------------------------------------------------------------------------------

# the official prompt learner's templates per DATASET.NAME (data, reproduced exactly with its odd spaces, §5.2)
PLOTPP_TEMPLATES = {
    "Caltech101": ["a photo of a", "this is a photo", "this is picture of", "one picture of a"],
    "DescribableTextures": ["a photo of a texture", "this is a photo texture", "this is a picture texture",
                            "one picture of a texture"],
    "EuroSAT": ["a centered satellite photo of", "a centered satellite picture of",
                "this is centered satellite photo of", "one centered satellite photo of a"],
    "FGVCAircraft": ["a photo of an aircraft", "a picture of an aircraft", "this is aircraft picture of",
                     "one picture of an aircraft"],
    "Food101": ["a photo of a food", "this is a food photo", " this is food picture of", "one picture of a food"],
    "ImageNet": ["a photo of a", "this is a photo ", "this is a", "one picture of a"],
    "OxfordFlowers": ["a photo of a flower", "one picture of a flower", "this is flower picture of",
                      "one picture of a flower"],
    "OxfordPets": ["a photo of a pet", "one picture of a pet", "this is pet picture of", "one picture of a pet"],
    "StanfordCars": ["a photo of a", "this is a photo ", "this is picture of", "one picture of a"],
    "SUN397": ["a photo of a", "this is a photo", "this is picture of", "one picture of a"],
    "UCF101": ["a photo of a person doing", "this is a photo people doing", "this is picture of people doing",
               "one picture of a person doing"],
}
MODEL_UPDATES = ("vision", "joint", "")


def plotpp_templates(dataset, fallback=""):
    """The templates of ``dataset`` (official table), else of ``fallback`` (TEMPLATE_FALLBACK, ours)."""
    if dataset in PLOTPP_TEMPLATES:
        return PLOTPP_TEMPLATES[dataset]
    if fallback in PLOTPP_TEMPLATES:
        print(f"Note: no PLOT++ templates for {dataset}; using those of {fallback} (TRAINER.PLOTPP.TEMPLATE_FALLBACK)")
        return PLOTPP_TEMPLATES[fallback]
    raise UserError(f"PLOT++ has context templates only for {', '.join(PLOTPP_TEMPLATES)} (DATASET.NAME is {dataset}; "
                    "the official code fails with a KeyError, Q16): set TRAINER.PLOTPP.TEMPLATE_FALLBACK to one of "
                    "them, or TRAINER.PLOTPP.CTX_INIT False for random contexts of N_CTX vectors")


class PLOTPPPromptLearner(nn.Module):
    """Official keys: ``ctx`` (N, L, D) text contexts, ``ctx_vision`` (M, N_CTX_V, vision width) visual prompt
    sets; buffers ``token_prefix`` (K, 1, D) and ``token_suffix`` (N or 1, K, S, D) per (prompt, class).

    CTX_INIT True (official, §5.2): prompt n starts from template n of the dataset; L = words of template 0
    for every template (Q17: longer templates keep their extra words fixed, shorter ones lose the first token of
    each class name to the context); ``PER_TEMPLATE_CTX True`` gives each template its own token count.
    CTX_INIT False (ours; official crash): N random contexts of N_CTX vectors, "X" placeholders."""

    def __init__(self, cfg, classnames, text_encoder, vision_width, templates=None):
        super().__init__()
        n_prompts, width, dtype = cfg.N, text_encoder.width, text_encoder.dtype
        device = text_encoder.positional_embedding.device
        if templates is not None:
            templates = [t.replace("_", " ") for t in templates[:n_prompts]]
            n_words = len(templates[0].split())
            lengths = [bpe_length(t) if cfg.PER_TEMPLATE_CTX else n_words for t in templates]
            ctx = torch.zeros(n_prompts, max(lengths), width, dtype=dtype, device=device)
            with torch.no_grad():
                for i, (t, length) in enumerate(zip(templates, lengths)):
                    embedding = text_encoder.embed(tokenize(t, text_encoder.context_length).to(device))
                    ctx[i, :length] = embedding[0, 1:1 + length]
            print(f"Initial contexts: {templates}")
        else:
            ctx = normal_prompt(n_prompts, cfg.N_CTX, width, dtype=dtype, device=device)
            lengths = [cfg.N_CTX] * n_prompts
            templates = [" ".join(["X"] * cfg.N_CTX)]
            print(f'Initializing {n_prompts} random contexts "{templates[0]}"')
        ctx_vision = normal_prompt(cfg.M, cfg.N_CTX_V, vision_width, dtype=dtype, device=device)
        print(f"Number of context words (tokens): {lengths}; text prompts: {n_prompts}; visual prompt sets: {cfg.M} x "
              f"{cfg.N_CTX_V}")
        self.ctx = nn.Parameter(ctx)
        self.ctx_vision = nn.Parameter(ctx_vision)
        parts = [embed_class_prompts(text_encoder, classnames, t, length) for t, length in zip(templates, lengths)]
        longest = max(p[2].shape[1] for p in parts)
        suffix = torch.stack([torch.nn.functional.pad(p[2], (0, 0, 0, longest - p[2].shape[1])) for p in parts])
        self.register_buffer("token_prefix", parts[0][1])
        self.register_buffer("token_suffix", suffix)
        tokens = torch.stack([p[0] for p in parts]).expand(n_prompts, -1, -1)
        self.register_buffer("tokenized_prompts", tokens.to(device), persistent=False)
        self.lengths = lengths
        self.n_prompts, self.n_cls, self.context_length = n_prompts, len(classnames), tokens.shape[-1]
        self.text_length = int(tokens.argmax(dim=-1).max()) + 1
        self.shared_prefix_length = min(common_prefix_length(tokens[i], lengths[i]) for i in range(n_prompts))

    @property
    def eot_indices(self):
        return self.tokenized_prompts.argmax(dim=-1).flatten()

    def shared_prefix(self):
        return prompt_major_shared_prefix(self.shared_prefix_length, self.n_prompts, self.n_cls, self.ctx.device)

    def forward(self):
        """Prompts (N*K, 77, D), row n*K + k = [SOS, ctx[n, :L_n], the rest of "<template n> <class k>."]."""
        n, k = self.n_prompts, self.n_cls
        prefix = self.token_prefix
        suffix = self.token_suffix.expand(n, -1, -1, -1)
        if len(set(self.lengths)) == 1:
            rows = torch.cat([prefix.unsqueeze(0).expand(n, -1, -1, -1), self.ctx.unsqueeze(1).expand(-1, k, -1, -1),
                              suffix], dim=2)
            return rows.flatten(0, 1)
        rows = []
        for i, length in enumerate(self.lengths):  # PER_TEMPLATE_CTX: every row keeps the full context length
            rest = self.context_length - 1 - length
            rows.append(torch.cat([prefix, self.ctx[i, :length].expand(k, -1, -1), suffix[i, :, :rest]], dim=1))
        return torch.stack(rows).flatten(0, 1)


class PLOTPPCLIP(OTPromptCLIP):
    node = "PLOTPP"

    def __init__(self, cfg, classnames, templates, clip_model, encoder_options=None):
        super().__init__(cfg, clip_model, encoder_options, use_global=cfg.TRADE_OFF)
        self.prompt_learner = PLOTPPPromptLearner(cfg, classnames, self.text_encoder, self.image_encoder.width,
                                                  templates)

    def text_features(self):
        pl = self.prompt_learner
        return self.text_encoder(pl(), pl.eot_indices, length=pl.text_length, shared_prefix=pl.shared_prefix())

    def image_side(self, image):
        """(M prompted CLS features (B, M, d), their unnormalised mean (B, d)): the batch tiled M times, copy m
        with visual prompt set m appended after the positional embedding (shallow, §5.3)."""
        batch, m = image.shape[0], self.prompt_learner.ctx_vision.shape[0]
        copies = image.unsqueeze(1).expand(-1, m, *image.shape[1:]).flatten(0, 1)  # row b*M + m uses set m
        features = self.image_encoder(copies.to(self.dtype), extra_tokens=self.prompt_learner.ctx_vision)
        features = features.view(batch, m, -1)
        return features, features.mean(dim=1)


def stage_checkpoint(path):
    """The checkpoint file ``TRAINER.PLOTPP.PRETRAIN_DIR`` names: a file (official), or a stage-1 run folder /
    its ``prompt_learner`` folder (ours: the file its ``checkpoint`` pointer names). Raises one line naming
    the expected path."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isfile(path):
        return path
    for folder in (os.path.join(path, "prompt_learner"), path):
        pointer = os.path.join(folder, "checkpoint")
        if os.path.isfile(pointer):
            with open(pointer) as f:
                name = f.readline().strip()
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
            path = os.path.join(folder, name)
            break
    expected = path if not os.path.isdir(path) and os.path.basename(path).startswith("model") else (
        os.path.join(path, "prompt_learner", "model.pth.tar-<last epoch>"))
    raise UserError(f"TRAINER.PLOTPP.PRETRAIN_DIR: no stage-1 checkpoint at {expected}; train stage 1 first "
                    "(TRAINER.PLOTPP.MODEL_UPD vision) or point PRETRAIN_DIR at its checkpoint file or run folder")


@TRAINER_REGISTRY.register()
class PLOTPP(OTDiagnosticsHooks, PromptTrainer):
    """Official keys under ``TRAINER.PLOTPP`` (§9.2) with official defaults; ours documented in the README."""

    config_node = "PLOTPP"
    config_defaults = {
        "N_CTX": 4, "CSC": False, "CTX_INIT": True, "PREC": "fp16", "CLASS_TOKEN_POSITION": "end", "N": 4,
        "TRADE_OFF": False, "M": 4, "PRETRAIN_DIR": "", "MODEL_UPD": "", "N_CTX_V": 2,
        # ours: unknown datasets (Q16), per-template context length (Q17), loose loading (Q20), the OT stage
        "TEMPLATE_FALLBACK": "", "PER_TEMPLATE_CTX": False, "LOOSE_PRETRAIN": True, **OT_DEFAULTS,
    }
    # the stage-1 run that stage 2 starts from: a stage-2 checkpoint or bundle already holds both prompts
    training_only_keys = PromptTrainer.training_only_keys + ("TRAINER.PLOTPP.PRETRAIN_DIR",)

    @classmethod
    def resolve_cfg(cls, cfg):
        resolve_official_schedule(cfg, "PLOTPP")

    def nonfinite_hint(self):
        return fp16_kernel_hint(self) or super().nonfinite_hint()

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        c = cfg.TRAINER.PLOTPP
        if c.MODEL_UPD not in MODEL_UPDATES:
            raise UserError(f"TRAINER.PLOTPP.MODEL_UPD must be 'vision' (stage 1: visual prompts only), 'joint' or '' "
                            f"(stage 2: both), got {c.MODEL_UPD!r} (the official code trains both for any other value)")
        if c.CTX_INIT and c.N > 4:
            raise UserError(f"TRAINER.PLOTPP.N is {c.N} but CTX_INIT True has 4 templates per dataset (the official "
                            "code fails with an IndexError, Q16); use N <= 4 or CTX_INIT False")
        if min(c.N, c.M, c.N_CTX_V, c.N_CTX) < 1:
            raise UserError("TRAINER.PLOTPP: N, M, N_CTX and N_CTX_V must be positive")
        if c.CLASS_TOKEN_POSITION != "end" or c.CSC:
            print("Note: TRAINER.PLOTPP.CLASS_TOKEN_POSITION and CSC are not read (as officially: class name at the "
                  "end, contexts shared by the classes)")
        check_ot_options(c, "PLOTPP")
        if c.PRETRAIN_DIR:
            self.pretrain_file = stage_checkpoint(c.PRETRAIN_DIR)
        elif c.MODEL_UPD == "joint":
            print("Note: TRAINER.PLOTPP.MODEL_UPD joint without PRETRAIN_DIR: both prompts start from their initial "
                  "values (the official stage 2 starts from the stage-1 checkpoint)")

    def build_model(self):
        c = self.trainer_cfg
        clip_model = self.load_clip()
        require_vit(clip_model, "PLOT++", "visual prompt sets")
        templates = plotpp_templates(self.cfg.DATASET.NAME, c.TEMPLATE_FALLBACK) if c.CTX_INIT else None
        print("Building custom CLIP")
        self.model = PLOTPPCLIP(c, self.dm.dataset.classnames, templates, clip_model,
                                encoder_options=self.encoder_options)
        # stage 1 trains only the visual prompts (names containing "vision", as officially: Q18)
        trainable = "prompt_learner.ctx_vision" if c.MODEL_UPD == "vision" else "prompt_learner"
        print("Turning off gradients in both the image and the text encoder")
        for name, param in self.model.named_parameters():
            param.requires_grad_(trainable in name)
        print(f"Parameters to be updated: {sorted(n for n, p in self.model.named_parameters() if p.requires_grad)}")
        if c.PRETRAIN_DIR:  # before MODEL.INIT_WEIGHTS (register_trainable), which thus wins when both are given
            self.load_stage_checkpoint(self.pretrain_file)
        self.model.to(self.device)
        self.register_trainable("prompt_learner", self.model.prompt_learner)

    def load_stage_checkpoint(self, path):
        """Stage 2 / evaluation.sh: the prompts of the file (§8). Official: every tensor whose name and shape
        match is copied, mismatches skipped with a note (LOOSE_PRETRAIN True, Q20); CLIP weights and the fixed
        token buffers in the file are not used (ours come from the backbone and the current classes, Q19)."""
        print(f'Loading the stage-1 prompts from "{path}" (TRAINER.PLOTPP.PRETRAIN_DIR)')
        checkpoint = load_checkpoint(path)
        self.load_prompts(self.model.prompt_learner, checkpoint.get("state_dict", checkpoint), path)

    def adapt_checkpoint(self, name, state_dict):
        return drop_fixed_token_buffers(state_dict)

    def load_state_dict_checked(self, name, state_dict, ignored=()):
        self.load_prompts(self._models[name], state_dict, name)

    def load_prompts(self, module, state_dict, source):
        """Official whole-model files and ours. LOOSE_PRETRAIN True (official semantics): tensors whose name
        or shape differ are skipped with a note (cross-dataset: a target with another template length keeps
        its own initial ``ctx``, Q20); False: such a trainable tensor is an error."""
        state_dict = OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in state_dict.items())
        state_dict = drop_fixed_token_buffers(state_dict)
        own = module.state_dict()
        matched = OrderedDict((k, v) for k, v in state_dict.items() if k in own and own[k].shape == v.shape)
        skipped = [k for k in state_dict if k not in matched]
        kept = [n for n, _ in module.named_parameters() if n not in matched]
        if not self.trainer_cfg.LOOSE_PRETRAIN:
            bad = [n for n, p in module.named_parameters() if p.requires_grad and n not in matched]
            if bad:
                shapes = {k: tuple(v.shape) for k, v in state_dict.items() if k in bad}
                raise UserError(f"{source}: trainable tensors {bad} are missing or have other shapes ({shapes}; the "
                                f"model's: { {k: tuple(own[k].shape) for k in bad} }); TRAINER.PLOTPP.LOOSE_PRETRAIN "
                                "True skips them as the official code does")
        if not matched:
            raise UserError(f"{source}: no tensor matches the PLOT++ prompts by name and shape (written by another "
                            "trainer or backbone?)")
        if skipped or kept:
            print(f"Note: not loaded (name or shape differs; TRAINER.PLOTPP.LOOSE_PRETRAIN "
                  f"{self.trainer_cfg.LOOSE_PRETRAIN}): {skipped}; kept at their initial values: {kept}")
        module.load_state_dict(matched, strict=False)


__all__ = ["PLOT", "PLOTPP", "PLOTCLIP", "PLOTPPCLIP", "PLOTPromptLearner", "PLOTPPPromptLearner", "PLOTPP_TEMPLATES",
           "transport_scores", "official_schedule", "stage_checkpoint"]
