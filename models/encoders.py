"""CLIP text and image encoders over open_clip's modules, with the hooks prompt methods need.

Every prompt method changes CLIP's forward pass in a few ways: learned token embeddings at the text
input, tokens replaced or fused before given layers (deep prompts), extra visual tokens appended
before ``ln_pre``, or all output tokens instead of the pooled feature. The encoders expose exactly
these, so trainers never copy CLIP code:

* ``layer_hook(i, x) -> x`` is called before transformer block ``i`` (0-based) with the batch-first
  token tensor ``x`` (N, L, D); it may replace, fuse or append tokens (the text causal mask follows L).
* ``ImageEncoder(..., extra_tokens=P)`` appends P (N or 1, n, D) after the positional embedding.
* ``return_tokens=True`` also returns every output token after the final LayerNorm and projection.
Numerics follow OpenAI's CLIP (baselines.md §1.1-1.2): inputs cast to the weights' dtype, LayerNorm in
fp32, additive causal mask in the activation dtype.
"""
import torch
import torch.nn as nn


def _run_blocks(transformer, x, attn_mask_fn=None, layer_hook=None):
    batch_first = getattr(transformer, "batch_first", True)
    for i, block in enumerate(transformer.resblocks):
        if layer_hook is not None:
            x = layer_hook(i, x)
        mask = attn_mask_fn(x.shape[1], x.dtype, x.device) if attn_mask_fn is not None else None
        if batch_first:
            x = block(x, attn_mask=mask)
        else:
            x = block(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
    return x


def causal_mask(length, dtype, device):
    return torch.full((length, length), float("-inf"), device=device).triu_(1).to(dtype)


class TextEncoder(nn.Module):
    """Frozen CLIP text tower taking already-embedded prompts (N, L, D) and their end-token positions.

    ``length`` (an int known without looking at device tensors) cuts the sequences before encoding: with
    the causal mask, positions after the longest end token change neither the pooled feature nor any
    earlier token, so the result is the same within float rounding at a fraction of the cost.
    ``truncate = False`` (``MODEL.TEXT_TRUNCATE False``) always encodes the full context, as upstream.
    """

    def __init__(self, clip_model):
        super().__init__()
        self.truncate = True
        self.transformer = clip_model.transformer
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection

    @property
    def dtype(self):
        return self.text_projection.dtype

    @property
    def width(self):
        return self.positional_embedding.shape[1]

    @property
    def num_layers(self):
        return len(self.transformer.resblocks)

    @property
    def context_length(self):
        return self.positional_embedding.shape[0]

    def embed(self, tokens):
        """Token embeddings of ``tokens`` (N, L) in the encoder's dtype (for fixed prompt parts)."""
        return self.token_embedding(tokens).to(self.dtype)

    def forward(self, prompts, eot_indices, layer_hook=None, return_tokens=False, length=None):
        if length is not None and self.truncate and not return_tokens:
            prompts = prompts[:, :length]
        x = prompts + self.positional_embedding[: prompts.shape[1]].to(self.dtype)
        x = _run_blocks(self.transformer, x, causal_mask, layer_hook)
        x = self.ln_final(x).to(self.dtype)
        pooled = x[torch.arange(x.shape[0], device=x.device), eot_indices] @ self.text_projection
        if return_tokens:
            return pooled, x @ self.text_projection
        return pooled

    def encode_tokens(self, tokens, **kwargs):
        """Plain CLIP text features of tokenised text (N, L), as ``clip.encode_text``."""
        return self(self.embed(tokens), tokens.argmax(dim=-1), **kwargs)


class ImageEncoder(nn.Module):
    """Frozen CLIP image tower. ViTs support prompt hooks; ResNets run CLIP's own forward."""

    def __init__(self, clip_model):
        super().__init__()
        self.visual = clip_model.visual
        self.is_vit = hasattr(self.visual, "class_embedding")

    @property
    def dtype(self):
        return (self.visual.conv1.weight if self.is_vit else self.visual.conv1.weight).dtype

    @property
    def width(self):
        return self.visual.conv1.weight.shape[0] if self.is_vit else None

    @property
    def num_layers(self):
        return len(self.visual.transformer.resblocks) if self.is_vit else None

    @property
    def output_dim(self):
        return self.visual.output_dim

    def forward(self, images, extra_tokens=None, layer_hook=None, return_tokens=False):
        if not self.is_vit:
            if extra_tokens is not None or layer_hook is not None or return_tokens:
                raise ValueError("visual prompts need a ViT backbone (this CLIP has a ResNet image tower)")
            return self.visual(images.to(self.dtype))
        v = self.visual
        x = v.conv1(images.to(self.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        if extra_tokens is not None:
            x = torch.cat([x, extra_tokens.to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
        x = v.ln_pre(x)
        x = _run_blocks(v.transformer, x, None, layer_hook)
        if return_tokens:
            tokens = v.ln_post(x)
            projected = tokens @ v.proj
            return projected[:, 0], projected
        return v.ln_post(x[:, 0, :]) @ v.proj
