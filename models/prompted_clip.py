"""CLIP as an image classifier whose class embeddings come from (learned) prompts."""
import torch
import torch.nn as nn

from .encoders import ImageEncoder, TextEncoder


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


class PromptedCLIP(nn.Module):
    """logits = exp(logit_scale) * <norm(image feature), norm(class text feature)> (baselines.md §1.3).

    Subclasses implement ``text_features()`` (one row per class). When that does not depend on the
    image, evaluation encodes the classes once (``cache_text_features``) instead of once per batch;
    the logits are the same.
    """

    # True when the class embeddings depend on the image (CoCoOp): nothing can be cached then
    image_conditioned_text = False

    def __init__(self, clip_model):
        super().__init__()
        self.image_encoder = ImageEncoder(clip_model)
        self.text_encoder = TextEncoder(clip_model)
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

    def class_embeddings(self):
        # the cache lives between before_test and after_test; never used where gradients flow (training)
        if self._text_cache is not None and not torch.is_grad_enabled():
            return self._text_cache
        return normalize(self.text_features())

    def image_features(self, image):
        """Image features before normalisation; prompt methods override this to add visual prompts."""
        return self.image_encoder(image.to(self.dtype))

    def forward(self, image, class_embeddings=None):
        """Logits (B, n_cls); ``class_embeddings`` (normalised) defaults to the (cached) class features."""
        if class_embeddings is None:
            class_embeddings = self.class_embeddings()
        return self.logit_scale.exp() * normalize(self.image_features(image)) @ class_embeddings.t()
