"""PromptSRC, prompting with self-regulating constraints (docs/design/promptsrc.md).

IVLP's independent deep prompts (trainers/ivlp.py, docs/design/baselines.md §6) trained with three
regularisers towards frozen CLIP (§5): L1 between the prompted and the frozen text features (the frozen
ones averaged over 60 ImageNet templates, §4.1), L1 between the prompted and the frozen image features,
and KL(zero-shot || prompted) of the logits; after every epoch the prompts are folded into a
Gaussian-weighted sum over epochs (GPA, §7), which replaces them after the last epoch.

One frozen CLIP serves the prompted and the frozen paths (upstream builds three, §2.1): the encoders run
the same weights with or without the prompt hooks. Keys live under ``TRAINER.PROMPTSRC`` with the official
names and defaults, so the official yamls and command lines run unchanged. Ours, each with the official
behaviour as default (docs/design/promptsrc.md §12):

* ``FP16_PROMPT_ROUNDING`` (True): deep prompts rounded through fp16 at every use, also in fp32 (Q3);
* ``GPA_FROZEN_ROUNDING`` (True): upstream aggregates the whole state dict, so the frozen CLIP weights of the
  final model come out as the GPA fold of themselves (a few fp16 ulps in fp16 storage, Q4); reproduced by
  folding them once at the end instead of copying the model every epoch; False = GPA of the prompts only;
* ``TEMPLATE_NORM_EACH`` (False): upstream averages unnormalised template features (Q5); True = CLIP's
  ensemble (normalise each template first).

Fixed without a switch (the official behaviour is a crash or has no effect on results): PREC fp32 and amp
train (Q1, Q2), the template features are computed only when training (Q12), the GPA state is part of the
resume checkpoints (Q10), checkpoints hold the prompts only (Q11).
"""
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from engine import TRAINER_REGISTRY
from engine.utils.tools import UserError
from models.clip import bpe_length, check_depth, require_vit
from models.deep_prompts import is_official_whole_model, rename_official_keys
from models.prompted_clip import normalize, template_text_features
from models.templates import PROMPTSRC_TEMPLATES

from .base import PromptTrainer
from .ivlp import IVLPCLIP

GPA_KEY = "_gpa."  # checkpoint entries of ours that are not module tensors (GPA resume state, fold record)


# ----- pieces another method could share (candidates for models/) -----

def gaussian_epoch_weights(epochs, mean, std, normalise=True):
    """GPA weights of epochs 1..``epochs`` (docs/design/promptsrc.md §7.1): the N(mean, std²) density at each
    epoch, divided by their sum; float64 and summed in epoch order, as upstream, so the values are its
    bit for bit. ``normalise=False``: the densities."""
    density = [(1 / (std * np.sqrt(2 * np.pi))) * np.exp(-0.5 * ((a - mean) / std) ** 2) for a in range(1, epochs + 1)]
    if not normalise:
        return [float(d) for d in density]
    total = sum(density)  # Python's left-to-right sum, as upstream (np.sum pairs terms)
    return [float(d / total) for d in density]


def gpa_fold(tensor, weights):
    """``((t·w1 + t·w2) + t·w3) + ...`` in ``tensor``'s dtype: what upstream's per-epoch weighted state-dict sum
    makes of a tensor that is the same every epoch (a frozen weight; docs/design/promptsrc.md §7.2)."""
    acc = tensor * weights[0]
    for w in weights[1:]:
        acc = acc + tensor * w
    return acc


class GaussianPromptAggregation:
    """Running Gaussian-weighted sum of the trainable tensors over epochs (GPA, docs/design/promptsrc.md §7).

    ``add(epoch, tensors)`` folds in the end-of-epoch values with the epoch's weight, in each tensor's dtype
    and in upstream's order (``sum + value·w``); only the prompts are stored, never a copy of the model."""

    def __init__(self, weights):
        self.weights = list(weights)
        self.sums = None
        self.epochs = 0

    @torch.no_grad()
    def add(self, epoch, tensors):
        if epoch != self.epochs:
            raise RuntimeError(f"GPA: epoch {epoch + 1} folded after {self.epochs} epochs")
        w = self.weights[epoch]
        if self.sums is None:
            self.sums = OrderedDict((k, t.detach() * w) for k, t in tensors.items())
        else:
            self.sums = OrderedDict((k, self.sums[k] + t.detach() * w) for k, t in tensors.items())
        self.epochs += 1

    @property
    def complete(self):
        return self.epochs == len(self.weights)

    def state(self):
        """Checkpoint entries (prefixed ``GPA_KEY``) that let a resumed run continue the sum exactly."""
        if self.sums is None or self.complete:
            return {}
        out = {f"{GPA_KEY}sum.{k}": v.clone() for k, v in self.sums.items()}
        out[f"{GPA_KEY}epochs"] = torch.tensor(self.epochs)
        return out

    def load_state(self, entries):
        sums = OrderedDict((k[len(f"{GPA_KEY}sum."):], v) for k, v in entries.items() if k.startswith(f"{GPA_KEY}sum."))
        if f"{GPA_KEY}epochs" in entries:
            self.sums, self.epochs = sums, int(entries[f"{GPA_KEY}epochs"])


def openai_fp16_names(model):
    """Names of the tensors of ``model`` that OpenAI's fp16 storage keeps in fp16 (the conv, linear and attention
    projection weights and biases, ``text_projection``, ``proj``: open_clip's ``convert_weights_to_lp``)."""
    names = set()
    for prefix, module in model.named_modules():
        prefix = prefix + "." if prefix else ""
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            names.update(prefix + n for n in ("weight", "bias") if getattr(module, n, None) is not None)
        if isinstance(module, nn.MultiheadAttention):
            attrs = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias", "bias_k",
                     "bias_v")
            names.update(prefix + n for n in attrs if getattr(module, n, None) is not None)
        for n in ("text_projection", "proj"):
            if isinstance(getattr(module, n, None), torch.Tensor):
                names.add(prefix + n)
    return names


# ----- the model -----

class PromptSRCCLIP(IVLPCLIP):
    """IVLP's prompted CLIP plus the frozen targets of the regularisers, from the same frozen weights."""

    def __init__(self, cfg, classnames, clip_model, encoder_options=None):
        super().__init__(cfg, classnames, clip_model, encoder_options)
        self.classnames = list(classnames)
        self.template_norm_each = cfg.TEMPLATE_NORM_EACH
        self._frozen_text = None

    @torch.no_grad()
    def frozen_text_features(self):
        """norm(template-ensemble features) (C, E) in fp32, computed on first use (only training needs them)."""
        if self._frozen_text is None:
            self._frozen_text = normalize(template_text_features(
                self.text_encoder, self.classnames, PROMPTSRC_TEMPLATES, normalize_each=self.template_norm_each,
                fp32=True))
        return self._frozen_text

    @torch.no_grad()
    def frozen_image_features(self, image):
        """norm(unprompted image features) in the storage dtype (upstream's frozen fp16 tower, §4.2)."""
        return normalize(self.image_encoder(image.to(self.dtype)))

    def frozen_tensors(self):
        """The frozen tensors upstream's GPA folds (its whole-model state dict minus the prompts, §7.2), by our
        names: both towers (no token embedding: upstream's model holds none), ``logit_scale``, token buffers."""
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        out, seen = OrderedDict(), set()
        for k, v in self.state_dict().items():
            if k in trainable or k == "text_encoder.token_embedding.weight" or v.data_ptr() in seen:
                continue  # a tensor shared under two names is folded once
            seen.add(v.data_ptr())
            out[k] = v
        return out


# ----- the trainer -----

@TRAINER_REGISTRY.register()
class PromptSRC(PromptTrainer):
    config_node = "PROMPTSRC"
    config_defaults = {
        # official keys and defaults (docs/design/promptsrc.md §9.1); ints as upstream's yamls write them
        "N_CTX_VISION": 4, "N_CTX_TEXT": 4, "CTX_INIT": "a photo of a", "PREC": "fp16",
        "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9, "TEXT_LOSS_WEIGHT": 25, "IMAGE_LOSS_WEIGHT": 10,
        "GPA_MEAN": 15, "GPA_STD": 1,
        # ours (module docstring); the defaults are the official behaviour
        "FP16_PROMPT_ROUNDING": True, "GPA_FROZEN_ROUNDING": True, "TEMPLATE_NORM_EACH": False,
    }

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        c = cfg.TRAINER.PROMPTSRC
        if c.N_CTX_TEXT < 1 or (c.PROMPT_DEPTH_VISION > 0 and c.N_CTX_VISION < 1):
            raise UserError("TRAINER.PROMPTSRC.N_CTX_TEXT (and N_CTX_VISION when PROMPT_DEPTH_VISION > 0) must be >= 1")
        if c.PROMPT_DEPTH_VISION < 0:
            raise UserError(f"TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION must be >= 0, got {c.PROMPT_DEPTH_VISION}")
        if c.CTX_INIT and c.N_CTX_TEXT <= 4 and bpe_length(c.CTX_INIT.replace("_", " ")) < c.N_CTX_TEXT:
            raise UserError(f"TRAINER.PROMPTSRC.CTX_INIT {c.CTX_INIT!r} has fewer tokens than N_CTX_TEXT "
                            f"{c.N_CTX_TEXT}: the learned context would cover the end token (Q15)")
        if not c.GPA_STD > 0:
            raise UserError(f"TRAINER.PROMPTSRC.GPA_STD must be > 0 (the width of the Gaussian over epochs), got "
                            f"{c.GPA_STD}")
        if cfg.OPTIM.MAX_EPOCH >= 1:
            density = gaussian_epoch_weights(cfg.OPTIM.MAX_EPOCH, c.GPA_MEAN, c.GPA_STD, normalise=False)
            if not sum(density) > 0:
                raise UserError(f"TRAINER.PROMPTSRC.GPA_MEAN {c.GPA_MEAN} / GPA_STD {c.GPA_STD} give every epoch "
                                f"1..{cfg.OPTIM.MAX_EPOCH} a zero Gaussian weight; put GPA_MEAN within the epochs "
                                "or widen GPA_STD")

    def build_model(self):
        cfg = self.trainer_cfg
        clip_model = self.load_clip()
        check_depth("TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", cfg.PROMPT_DEPTH_TEXT, len(clip_model.transformer.resblocks))
        if cfg.PROMPT_DEPTH_VISION > 0:
            require_vit(clip_model, "PromptSRC", "visual prompts; set TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION 0 for "
                                                 "text prompts only")
            check_depth("TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", cfg.PROMPT_DEPTH_VISION,
                        len(clip_model.visual.transformer.resblocks))
        self.gpa = GaussianPromptAggregation(gaussian_epoch_weights(max(self.cfg.OPTIM.MAX_EPOCH, 0), cfg.GPA_MEAN,
                                                                    cfg.GPA_STD))
        self._resuming = False
        # (weights, fp16 storage) of the fold applied to the frozen weights, "official" for an official
        # checkpoint's stored ones, None while they are the backbone's
        self._frozen_fold = None
        self.build_custom_clip(PromptSRCCLIP, cfg, self.dm.dataset.classnames, register_name="VLPromptLearner",
                               clip_model=clip_model)

    # ----- the loss (docs/design/promptsrc.md §5) -----
    def compute_loss(self, image, label):
        model, cfg = self.model, self.trainer_cfg
        text = normalize(model.text_features())
        prompted = normalize(model.image_features(image))
        logits = model.logits(prompted, text)
        frozen_text = model.frozen_text_features()
        frozen_image = model.frozen_image_features(image)
        with torch.no_grad():  # upstream casts the template features to its fp16 tower's dtype (Q7)
            zero_shot_logits = model.logits(frozen_image, frozen_text.to(frozen_image.dtype))
        loss_ce = F.cross_entropy(logits, label)
        loss_text = F.l1_loss(text, frozen_text, reduction="mean") * cfg.TEXT_LOSS_WEIGHT
        loss_image = F.l1_loss(prompted, frozen_image, reduction="mean") * cfg.IMAGE_LOSS_WEIGHT
        # KL(zero-shot || prompted), summed and divided by B*C, temperature 1 (Q6)
        loss_kl = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(zero_shot_logits, dim=1), reduction="sum",
                           log_target=True) / logits.numel()
        return loss_ce + (loss_kl + loss_text + loss_image), logits

    # ----- GPA (docs/design/promptsrc.md §7) -----
    def gpa_tensors(self):
        return OrderedDict((n, p) for n, p in self.model.prompt_learner.named_parameters() if p.requires_grad)

    def after_epoch(self):
        """Fold this epoch's prompts into the GPA sum; after the last epoch the sum replaces the prompts (and,
        with GPA_FROZEN_ROUNDING, the frozen weights become their fold), before the checkpoint is written."""
        self.gpa.add(self.epoch, self.gpa_tensors())
        if self.epoch + 1 == self.max_epoch:
            print("Using GPA model for final inference...")
            with torch.no_grad():
                for name, p in self.gpa_tensors().items():
                    p.copy_(self.gpa.sums[name])
            if self.trainer_cfg.GPA_FROZEN_ROUNDING:
                self.fold_frozen_weights(self.gpa.weights, own_dtypes=True)
        super().after_epoch()

    @torch.no_grad()
    def fold_frozen_weights(self, weights, own_dtypes=False, fp16_storage=False):
        """Replace the frozen weights W by ``gpa_fold(W)`` (Q4). ``own_dtypes``: in each tensor's dtype, token
        buffers included (the end of our training, as upstream's final load). Otherwise (loading a checkpoint
        of ours): the CLIP weights only (upstream's evaluation rebuilds the token buffers), in the dtypes of the
        training, ``fp16_storage`` meaning OpenAI's fp16 layout, then cast to the current dtype."""
        if self._frozen_fold is not None:
            print("Note: the frozen CLIP weights already hold a GPA fold; not folding again")
            return
        model = self.model
        fp16 = openai_fp16_names(model) if fp16_storage and not own_dtypes else set()
        for name, t in model.frozen_tensors().items():
            if not own_dtypes and name.startswith("prompt_learner."):
                continue
            if own_dtypes:
                t.copy_(gpa_fold(t, weights))
            else:
                storage = torch.float16 if name in fp16 else torch.float32
                t.copy_(gpa_fold(t.to(storage), weights).to(t.dtype))
        self._frozen_fold = (list(weights), model.text_encoder.dtype == torch.float16 if own_dtypes else fp16_storage)
        model.clear_text_cache()

    @torch.no_grad()
    def load_official_frozen_weights(self, state_dict):
        """The frozen CLIP tensors of an official whole-model checkpoint (GPA-folded by its training, §7.3)
        replace ours, as upstream's non-strict load does; the frozen tower copy and token buffers are not used."""
        ours = self.model.frozen_tensors()
        loaded = 0
        for key, value in state_dict.items():
            if "VPT" in key or key.startswith("prompt_learner."):
                continue
            if key.startswith("image_encoder."):
                name = "image_encoder.visual." + key[len("image_encoder."):]
            elif key.startswith("text_encoder.") or key == "logit_scale":
                name = key
            else:
                continue
            if name not in ours:
                continue
            if ours[name].shape != value.shape:
                raise UserError(f"the official checkpoint's {key} has shape {tuple(value.shape)} but this backbone's "
                                f"is {tuple(ours[name].shape)}: it was trained on another CLIP (set "
                                "TRAINER.PROMPTSRC.GPA_FROZEN_ROUNDING False to load only its prompts)")
            ours[name].copy_(value.to(ours[name].dtype))
            loaded += 1
        if loaded:
            self._frozen_fold = "official"
            self.model.clear_text_cache()
            print(f"Loaded {loaded} frozen CLIP tensors of the official checkpoint (its GPA-folded weights; "
                  "TRAINER.PROMPTSRC.GPA_FROZEN_ROUNDING False keeps the backbone's)")

    # ----- checkpoints (docs/design/promptsrc.md §11) -----
    def checkpoint_state_dict(self, name):
        """The prompt module, plus the GPA sum while training runs (resume) and, once the frozen weights were
        folded, the fold's record (an evaluation of the checkpoint repeats it)."""
        state = super().checkpoint_state_dict(name)
        state.update(self.gpa.state())
        if isinstance(self._frozen_fold, tuple):
            weights, fp16 = self._frozen_fold
            state[f"{GPA_KEY}frozen_fold"] = torch.tensor(weights, dtype=torch.float64)
            state[f"{GPA_KEY}frozen_fold_fp16"] = torch.tensor(fp16)
        return state

    def resume_model_if_exist(self, directory):
        self._resuming = True
        try:
            start_epoch = super().resume_model_if_exist(directory)
        finally:
            self._resuming = False
        if 0 < start_epoch < self.max_epoch and self.gpa.epochs != start_epoch:
            raise UserError(f"the checkpoint in {directory} has no GPA state for its {start_epoch} epochs (written by "
                            "another trainer or version); pass another --output-dir")
        return start_epoch

    def load_state_dict_checked(self, name, state_dict, ignored=()):
        state_dict = OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in state_dict.items())
        ours = OrderedDict((k, state_dict.pop(k)) for k in list(state_dict) if k.startswith(GPA_KEY))
        fold_frozen = self.trainer_cfg.GPA_FROZEN_ROUNDING
        if fold_frozen and is_official_whole_model(state_dict):
            self.load_official_frozen_weights(state_dict)
        super().load_state_dict_checked(name, state_dict, ignored)
        if self._resuming:
            self.gpa.load_state(ours)
        if fold_frozen and f"{GPA_KEY}frozen_fold" in ours:
            self.fold_frozen_weights(ours[f"{GPA_KEY}frozen_fold"].tolist(),
                                     fp16_storage=bool(ours.get(f"{GPA_KEY}frozen_fold_fp16", False)))

    def adapt_checkpoint(self, name, state_dict):
        """Official whole-model names -> ours (as IVLP), without the frozen tower copy and our GPA entries."""
        state_dict = OrderedDict((k, v) for k, v in state_dict.items()
                                 if not k.startswith((GPA_KEY, "prompt_learner.ZS_image_encoder.")))
        return rename_official_keys(state_dict)


__all__ = ["PromptSRC", "PromptSRCCLIP", "GaussianPromptAggregation", "gaussian_epoch_weights", "gpa_fold",
           "openai_fp16_names"]
