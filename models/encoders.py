"""CLIP text and image encoders over open_clip's modules, with the hooks prompt methods need.

Every prompt method changes CLIP's forward pass in a few ways: learned token embeddings at the text
input, tokens replaced or fused before given layers (deep prompts), extra visual tokens appended
before ``ln_pre``, or all output tokens instead of the pooled feature. The encoders expose exactly
these, so trainers never copy CLIP code:

* ``layer_hook(i, x) -> x`` is called before transformer block ``i`` (0-based) with the batch-first
  token tensor ``x`` (N, L, D); it may replace, fuse or append tokens (the text causal mask follows L).
* ``ImageEncoder(..., extra_tokens=P)`` appends P after the positional embedding: (n, D) or (1, n, D) for
  every image, (N, n, D) per image, or (S, n, D) prompt sets tiled over the rows (``tile_rows``).
* ``return_tokens=True`` also returns every output token after the final LayerNorm and projection.
Numerics follow OpenAI's CLIP (docs/design/baselines.md §1.1-1.2): inputs cast to the weights' dtype, LayerNorm in
fp32, additive causal mask in the activation dtype.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def _run_blocks(transformer, x, attn_mask_fn=None, layer_hook=None, fast=True):
    """The blocks in order, ``layer_hook`` before each; ``fast``: OpenAI blocks run through their weights."""
    batch_first = getattr(transformer, "batch_first", True)
    for i, block in enumerate(transformer.resblocks):
        if layer_hook is not None:
            x = layer_hook(i, x)
        mask = attn_mask_fn(x.shape[1], x.dtype, x.device) if attn_mask_fn is not None else None
        if fast:
            x = _block_forward(block, x, mask)
        elif batch_first:
            x = block(x, attn_mask=mask)
        else:
            x = block(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
    return x


def causal_mask(length, dtype, device):
    return torch.full((length, length), float("-inf"), device=device).triu_(1).to(dtype)


@dataclass
class SharedPrefix:
    """The first ``length`` input tokens are the same for every row of a group (``MODEL.TEXT_SHARED_PREFIX``).

    With the causal mask those positions see only each other, so their states are computed once per group
    and every row's remaining tokens attend to them: identical results (within float rounding) for a
    fraction of the work when many classes share a start token and learned context. ``row_group`` (R,)
    gives each row's group and ``group_rows`` (G,) one row of each group; None = all rows, one group.
    """

    length: int
    row_group: Optional[torch.Tensor] = None
    group_rows: Optional[torch.Tensor] = None


def _is_openai_block(block):
    """OpenAI-architecture blocks (pre-LN self-attention + MLP), which we run through their weights."""
    return (isinstance(getattr(block, "attn", None), nn.MultiheadAttention) and block.attn._qkv_same_embed_dim
            and block.attn.in_proj_bias is not None and not hasattr(block, "ln_1_kv")
            and type(getattr(block, "ln_attn", nn.Identity())) is nn.Identity and block.attn.dropout == 0.0)


def runs_fast_path(transformer, tower):
    """True when every block of ``transformer`` can be run through its weights (the fast path, and the
    only one with a shared prefix); otherwise say once, in the log, that the block's own forward is used."""
    fast = all(_is_openai_block(b) for b in transformer.resblocks)
    if not fast and tower not in _SLOW_PATH_REPORTED:
        _SLOW_PATH_REPORTED.add(tower)
        kind = type(transformer.resblocks[0]).__name__ if len(transformer.resblocks) else "?"
        print(f"Note: the {tower} encoder's blocks ({kind}) are not OpenAI-style blocks of the pinned open_clip; "
              "running their own forward (slower)" + ("; MODEL.TEXT_SHARED_PREFIX cannot be honoured"
                                                       if tower == "text" else ""))
    return fast


_SLOW_PATH_REPORTED = set()


def tile_rows(t, rows):
    """``t`` (S, n, D) for ``rows`` sequences: as it is when S == rows, expanded when S == 1, else repeated
    (row r gets ``t[r % S]``: the set-minor order of multi-prompt methods)."""
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.shape[0] == rows:
        return t
    if t.shape[0] == 1:
        return t.expand(rows, -1, -1)
    if rows % t.shape[0]:
        raise ValueError(f"{t.shape[0]} prompt sets cannot be tiled over {rows} sequences")
    return t.repeat(rows // t.shape[0], 1, 1)


# The blocks are run through their weights rather than nn.MultiheadAttention's forward: with batch-first
# tensors, its autograd path projects a transposed (non-contiguous) input, which PyTorch turns into one small
# matrix product per token (3x slower projections on a CPU than one GEMM). Same operations otherwise:
# in-projection, scaled dot-product attention with the additive mask, out-projection, MLP.
def _heads(x, n_heads):
    return x.unflatten(-1, (n_heads, -1)).transpose(1, 2)  # (N, L, D) -> (N, H, L, D/H)


def _qkv(block, x):
    attn = block.attn
    return [_heads(t, attn.num_heads) for t in
            F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)]


def _finish_block(block, x, attended):
    """Residual out-projection of the attended heads (N, H, L, D/H), then the residual MLP."""
    out = F.linear(attended.transpose(1, 2).flatten(2), block.attn.out_proj.weight, block.attn.out_proj.bias)
    x = x + block.ls_1(out)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _block_forward(block, x, mask=None):
    q, k, v = _qkv(block, x)
    return _finish_block(block, x, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def _shared_prefix_block(block, prefix, rest, row_group, rest_mask):
    """One block over prefix states (G, P, D) and the rows' other states (R, S, D): the prefix attends
    causally to itself, each row's tokens to its group's prefix and causally to their own row."""
    qp, kp, vp = _qkv(block, prefix)
    qs, ks, vs = _qkv(block, rest)
    out_p = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=causal_mask(prefix.shape[1], qp.dtype, qp.device))
    k_all, v_all = torch.cat([kp[row_group], ks], dim=2), torch.cat([vp[row_group], vs], dim=2)
    out_s = F.scaled_dot_product_attention(qs, k_all, v_all, attn_mask=rest_mask.to(qs.dtype))
    return _finish_block(block, prefix, out_p), _finish_block(block, rest, out_s)


def _run_blocks_shared_prefix(transformer, x, shared, layer_hook=None):
    """``_run_blocks`` for causal text with a ``SharedPrefix``; ``layer_hook`` sees the prefix states of each
    group (G, P, D) only (deep text prompts live there) and must keep their shape."""
    p, rows = shared.length, x.shape[0]
    group_rows = shared.group_rows if shared.group_rows is not None else torch.zeros(1, dtype=torch.long,
                                                                                      device=x.device)
    row_group = shared.row_group if shared.row_group is not None else torch.zeros(rows, dtype=torch.long,
                                                                                 device=x.device)
    prefix, rest = x[group_rows, :p], x[:, p:]
    s = rest.shape[1]
    # rest token t (position p + t) sees the whole prefix and rest tokens 0..t
    rest_mask = torch.cat([torch.zeros(s, p, device=x.device), causal_mask(s, torch.float32, x.device)], dim=1)
    for i, block in enumerate(transformer.resblocks):
        if layer_hook is not None:
            hooked = layer_hook(i, prefix)
            if hooked.shape != prefix.shape:
                raise ValueError("with a shared prefix, layer hooks may only change the prefix tokens in place")
            prefix = hooked
        prefix, rest = _shared_prefix_block(block, prefix, rest, row_group, rest_mask)
    return torch.cat([prefix[row_group], rest], dim=1)


class TextEncoder(nn.Module):
    """Frozen CLIP text tower taking already-embedded prompts (N, L, D) and their end-token positions.

    ``length`` (an int known without looking at device tensors) cuts the sequences before encoding: with
    the causal mask, positions after the longest end token change neither the pooled feature nor any
    earlier token, so the result is the same within float rounding at a fraction of the cost.
    ``truncate = False`` (``MODEL.TEXT_TRUNCATE False``) always encodes the full context, as upstream.
    ``shared_prefix`` (a ``SharedPrefix``) encodes tokens common to many rows once; ignored when
    ``share_prefix = False`` (``MODEL.TEXT_SHARED_PREFIX False``), or for blocks of another architecture.
    """

    def __init__(self, clip_model, truncate=True, share_prefix=True):
        super().__init__()
        self.truncate = truncate
        self.share_prefix = share_prefix
        self.transformer = clip_model.transformer
        self.fast_blocks = runs_fast_path(self.transformer, "text")
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

    def forward(self, prompts, eot_indices, layer_hook=None, return_tokens=False, length=None,
                shared_prefix=None):
        if length is not None and self.truncate:  # the one place prompts are cut (MODEL.TEXT_TRUNCATE)
            prompts = prompts[:, :length]
        x = prompts + self.positional_embedding[: prompts.shape[1]].to(self.dtype)
        if self.uses_shared_prefix(shared_prefix, x.shape[1]):
            x = _run_blocks_shared_prefix(self.transformer, x, shared_prefix, layer_hook)
        else:
            x = _run_blocks(self.transformer, x, causal_mask, layer_hook, self.fast_blocks)
        x = self.ln_final(x).to(self.dtype)
        pooled = x[torch.arange(x.shape[0], device=x.device), eot_indices] @ self.text_projection
        if return_tokens:
            return pooled, x @ self.text_projection
        return pooled

    def uses_shared_prefix(self, shared_prefix, length):
        return (self.share_prefix and self.fast_blocks and shared_prefix is not None
                and 0 < shared_prefix.length < length)

    def encode_tokens(self, tokens, **kwargs):
        """Plain CLIP text features of tokenised text (N, L), as ``clip.encode_text``."""
        return self(self.embed(tokens), tokens.argmax(dim=-1), **kwargs)


def _attention_pool_all(pool, x):
    """CLIP's ResNet attention pool with every position as a query (PLOT's local features, docs/design/plot.md
    §3.3): (B, C, H, W) -> (B, HW+1, d). Position 0 is the usual image embedding (its query is the mean token,
    as in CLIP); positions 1..HW are the projected features of the grid cells in row-major order."""
    x = x.flatten(2).permute(2, 0, 1)  # (HW, B, C)
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
    x = x + pool.positional_embedding[:, None, :].to(x.dtype)
    x, _ = F.multi_head_attention_forward(
        query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias, use_separate_proj_weight=True, training=False, need_weights=False)
    return x.transpose(0, 1)


class ImageEncoder(nn.Module):
    """Frozen CLIP image tower. ViTs support prompt hooks and output tokens; ResNets give their output tokens
    too (the attention pool at every grid position), but take no prompts."""

    def __init__(self, clip_model):
        super().__init__()
        self.visual = clip_model.visual
        self.is_vit = hasattr(self.visual, "class_embedding")
        self.fast_blocks = runs_fast_path(self.visual.transformer, "image") if self.is_vit else False

    @property
    def dtype(self):
        return self.visual.conv1.weight.dtype

    @property
    def width(self):
        return self.visual.conv1.weight.shape[0] if self.is_vit else None

    @property
    def num_layers(self):
        return len(self.visual.transformer.resblocks) if self.is_vit else None

    @property
    def output_dim(self):
        return self.visual.output_dim

    def resnet_tokens(self, images):
        """(pooled (B, d), tokens (B, HW+1, d)) of a ResNet tower whose attention pool is CLIP's."""
        v = self.visual
        pool = getattr(v, "attnpool", None)
        if pool is None or not hasattr(pool, "q_proj"):
            raise ValueError(f"this ResNet image tower ({type(v).__name__}) has no CLIP attention pool, so it "
                             "gives no local features; use an OpenAI-architecture ResNet CLIP (RN50, RN101, ...)")
        x = v.stem(images.to(self.dtype))
        x = v.layer4(v.layer3(v.layer2(v.layer1(x))))
        tokens = _attention_pool_all(pool, x)
        return tokens[:, 0], tokens

    def forward(self, images, extra_tokens=None, layer_hook=None, return_tokens=False):
        if not self.is_vit:
            if extra_tokens is not None or layer_hook is not None:
                raise ValueError("visual prompts need a ViT backbone (this CLIP has a ResNet image tower)")
            if not return_tokens:
                return self.visual(images.to(self.dtype))
            return self.resnet_tokens(images)
        v = self.visual
        x = v.conv1(images.to(self.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        if extra_tokens is not None:
            x = torch.cat([x, tile_rows(extra_tokens.to(x.dtype), x.shape[0])], dim=1)
        x = v.ln_pre(x)
        x = _run_blocks(v.transformer, x, None, layer_hook, self.fast_blocks)
        if return_tokens:
            tokens = v.ln_post(x)
            projected = tokens @ v.proj
            return projected[:, 0], projected
        return v.ln_post(x[:, 0, :]) @ v.proj
