"""CLIP as an image classifier whose class embeddings come from (learned) prompts, and the pieces the
prompt methods share around it: hand-written-template text features and the consistency term."""
import contextlib
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .clip import tokenize
from .encoders import ImageEncoder, TextEncoder


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


@torch.no_grad()
def template_text_features(text_encoder, classnames, templates, normalize_each=True, fp32=False):
    """Frozen CLIP's class features from hand-written templates ("a photo of a {}."), averaged over the
    templates: of the normalised per-template features (CLIP's ensemble; one template: just normalised;
    docs/design/baselines.md §2), or with ``normalize_each=False`` of the raw ones (PromptSRC's, not
    normalised: docs/design/promptsrc.md §4.1). ``fp32``: computed in fp32 from the encoder's weights (an fp16
    encoder is upcast on a copy, as PromptSRC's fp32 copy of the fp16-rounded CLIP). ``_`` in class names
    is read as a space. Used by zero-shot CLIP, VPT, KgCoOp, SEP, TCP and PromptSRC."""
    encoder = copy.deepcopy(text_encoder).float() if fp32 and text_encoder.dtype != torch.float32 else text_encoder
    names = [c.replace("_", " ") for c in classnames]
    device = encoder.positional_embedding.device
    per_template = []
    with torch.autocast(device_type=device.type, enabled=False) if fp32 else contextlib.nullcontext():
        for template in templates:
            tokens = tokenize([template.format(c) for c in names], encoder.context_length).to(device)
            eot = tokens.argmax(dim=-1)
            features = encoder(encoder.embed(tokens), eot, length=int(eot.max()) + 1)
            features = features.float() if fp32 else features
            per_template.append(normalize(features) if normalize_each else features)
    return torch.stack(per_template).mean(0)


def consistency_loss(features, reference):
    """1 - mean cosine between matching rows (KgCoOp's knowledge term, SEP's text and image terms; the
    cosine's eps 1e-7 as upstream)."""
    return 1.0 - F.cosine_similarity(features, reference.to(features.dtype), dim=1, eps=1e-07).mean()


class PromptedCLIP(nn.Module):
    """logits = exp(logit_scale) * <norm(image feature), norm(class text feature)> (docs/design/baselines.md §1.3).

    Subclasses implement ``text_features()`` (one row per class). When that does not depend on the
    image, evaluation encodes the classes once (``cache_text_features``) instead of once per batch;
    the logits are the same. ``encoder_options`` are the text encoder's exact speed-up switches
    (``text_truncate``, ``text_shared_prefix``: MODEL.TEXT_TRUNCATE, MODEL.TEXT_SHARED_PREFIX).
    """

    # True when the class embeddings depend on the image (CoCoOp): nothing can be cached then
    image_conditioned_text = False

    def __init__(self, clip_model, encoder_options=None):
        super().__init__()
        options = encoder_options or {}
        self.image_encoder = ImageEncoder(clip_model)
        self.text_encoder = TextEncoder(clip_model, truncate=options.get("text_truncate", True),
                                        share_prefix=options.get("text_shared_prefix", True))
        self.logit_scale = clip_model.logit_scale
        self._text_cache = None
        self.image_encoder.eval()  # frozen; only registered (prompt) modules are switched to train mode
        self.text_encoder.eval()

    @property
    def dtype(self):
        return self.text_encoder.dtype

    def text_features(self):
        raise NotImplementedError

    @torch.no_grad()
    def cache_text_features(self):
        if not self.image_conditioned_text:
            self._text_cache = normalize(self.text_features())

    def clear_text_cache(self):
        self._text_cache = None

    def cached_text(self):
        """What ``cache_text_features`` stored, outside gradient computation only (never while training)."""
        return self._text_cache if not torch.is_grad_enabled() else None

    def class_embeddings(self):
        # the cache lives between before_test and after_test
        cached = self.cached_text()
        return cached if cached is not None else normalize(self.text_features())

    def image_features(self, image):
        """Image features before normalisation; prompt methods override this to add visual prompts."""
        return self.image_encoder(image.to(self.dtype))

    def logits(self, image_embeddings, class_embeddings):
        """The one logit formula: scaled cosine of normalised image and class embeddings."""
        return self.logit_scale.exp() * image_embeddings @ class_embeddings.t()

    def forward(self, image, class_embeddings=None):
        """Logits (B, n_cls); ``class_embeddings`` (normalised) defaults to the (cached) class features."""
        if class_embeddings is None:
            class_embeddings = self.class_embeddings()
        return self.logits(normalize(self.image_features(image)), class_embeddings)


class FixedPromptCLIP(PromptedCLIP):
    """CLIP with fixed hand-written prompts: class embeddings from ``template_text_features`` (zero-shot
    CLIP's classifier; VPT's, whose prompts are visual only)."""

    def __init__(self, clip_model, classnames, templates, encoder_options=None):
        super().__init__(clip_model, encoder_options)
        self.register_buffer("fixed_text_features", template_text_features(self.text_encoder, classnames, templates),
                             persistent=False)

    def text_features(self):
        return self.fixed_text_features
