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
        self._text_cache = normalize(self.text_features())

    def clear_text_cache(self):
        self._text_cache = None

    def class_embeddings(self):
        if self._text_cache is not None and not self.training:
            return self._text_cache
        return normalize(self.text_features())

    def forward(self, image):
        image_features = normalize(self.image_encoder(image.to(self.dtype)))
        return self.logit_scale.exp() * image_features @ self.class_embeddings().t()
