"""Fixed parts of class prompts and word-initialised context, shared by the text-prompt trainers."""
import torch

from engine.utils.tools import UserError

from .clip import bpe_length, tokenize
from .encoders import SharedPrefix


def class_prompt_texts(classnames, prefix):
    """The placeholder sentence per class: ``<prefix> <name>.`` with ``_`` in names read as spaces."""
    return [f"{prefix} {name.replace('_', ' ')}." for name in classnames]


@torch.no_grad()
def embed_class_prompts(text_encoder, classnames, prefix, n_ctx):
    """Tokenise ``<prefix> <name>.`` per class and split its embedding around the n_ctx context slots.

    Returns tokens (n_cls, L), prefix embedding (n_cls, 1, D: start token), suffix embedding
    (n_cls, L-1-n_ctx, D: name, period, end token, padding) and each name's BPE length.
    """
    names = [name.replace("_", " ") for name in classnames]
    tokens = tokenize(class_prompt_texts(names, prefix), text_encoder.context_length)
    embedding = text_encoder.embed(tokens.to(text_encoder.token_embedding.weight.device))
    name_lens = [bpe_length(name) for name in names]
    return tokens, embedding[:, :1, :], embedding[:, 1 + n_ctx:, :], name_lens


@torch.no_grad()
def context_from_words(text_encoder, phrase):
    """Embeddings of the words of ``phrase`` (``_`` = space) as initial context, and the phrase used.

    Each whitespace word must be one BPE token (true for "a photo of a"); otherwise the context
    slots would not line up with the words and we refuse (docs/design/baselines.md Q3).
    """
    phrase = phrase.replace("_", " ")
    n_words = len(phrase.split(" "))
    tokens = tokenize(phrase, text_encoder.context_length)
    n_tokens = bpe_length(phrase)
    if n_tokens != n_words:
        raise UserError(f"context init {phrase!r} has {n_words} words but {n_tokens} BPE tokens; "
                        "use words that are single tokens (e.g. 'a photo of a')")
    embedding = text_encoder.embed(tokens.to(text_encoder.token_embedding.weight.device))
    return embedding[0, 1:1 + n_words, :].clone(), phrase


def normal_prompt(*shape, dtype=torch.float32, device=None):
    """N(0, 0.02^2) values of ``shape``: how every official release draws random prompts and context."""
    t = torch.empty(*shape, dtype=dtype, device=device)
    torch.nn.init.normal_(t, std=0.02)
    return t


def init_context(text_encoder, ctx_init, n_ctx, n_cls=None):
    """CoOp-family context: the words of ``ctx_init`` (M = word count, overriding n_ctx: docs/design/baselines.md Q1)
    or N(0, 0.02^2) vectors, shared (n_ctx, D) or class-specific when ``n_cls`` is given (n_cls, n_ctx, D).

    Returns (context tensor in the encoder's dtype, placeholder prefix text).
    """
    if ctx_init:
        ctx, prefix = context_from_words(text_encoder, ctx_init)
        return ctx.to(text_encoder.dtype), prefix
    shape = (n_ctx, text_encoder.width) if n_cls is None else (n_cls, n_ctx, text_encoder.width)
    ctx = normal_prompt(*shape, dtype=text_encoder.dtype, device=text_encoder.positional_embedding.device)
    return ctx, " ".join(["X"] * n_ctx)


def init_leading_context(text_encoder, ctx_init, n_ctx):
    """MaPLe/IVLP context: the first ``n_ctx`` tokens of ``ctx_init`` become learnable while the whole
    phrase stays the placeholder prefix (its remaining words remain fixed text); with no phrase or
    n_ctx > 4 the phrase is ignored and random "X" context is used (docs/design/baselines.md Q4)."""
    if ctx_init and n_ctx <= 4:
        phrase = ctx_init.replace("_", " ")
        tokens = tokenize(phrase, text_encoder.context_length)
        with torch.no_grad():
            embedding = text_encoder.embed(tokens.to(text_encoder.token_embedding.weight.device))
        return embedding[0, 1:1 + n_ctx, :].clone(), phrase
    return init_context(text_encoder, "", n_ctx)


def common_prefix_length(tokens, n_ctx):
    """Positions every row of ``tokens`` (N, L) shares when its slots 1..n_ctx hold the same context: the
    start token, the context and the fixed words after it that all rows have (e.g. "of a" in "X X of a
    <name>."), never reaching a row's end token."""
    rest = tokens[:, 1 + n_ctx:]
    same = (rest == rest[:1]).all(dim=0)
    fixed = int(same.long().cumprod(0).sum()) if len(rest) > 1 else 0
    return min(1 + n_ctx + fixed, int(tokens.argmax(dim=-1).min()))


class ClassPromptLearner(torch.nn.Module):
    """Learned context ``ctx`` between each class prompt's fixed start token and its fixed rest.

    State-dict keys as in the official code: ``ctx``, ``token_prefix`` (n_cls, 1, D) and
    ``token_suffix`` (n_cls, L-1-n_ctx, D); the two buffers are rebuilt from the current class names
    and never loaded from a checkpoint (docs/design/baselines.md §1.6).
    """

    def __init__(self, text_encoder, classnames, ctx, prompt_prefix):
        super().__init__()
        self.ctx = torch.nn.Parameter(ctx)
        self.n_cls, self.n_ctx = len(classnames), ctx.shape[-2]
        tokens, prefix, suffix, self.name_lens = embed_class_prompts(text_encoder, classnames, prompt_prefix,
                                                                     self.n_ctx)
        self.register_buffer("token_prefix", prefix)
        self.register_buffer("token_suffix", suffix)
        self.register_buffer("tokenized_prompts", tokens, persistent=False)
        # tokens up to the longest end token: all the text encoder needs (see TextEncoder ``length``)
        self.text_length = int(tokens.argmax(dim=-1).max()) + 1
        # what every class prompt shares when the context is too (constant: no device read per step)
        self.shared_prefix_length = common_prefix_length(tokens, self.n_ctx)

    @property
    def eot_indices(self):
        """End-token positions of the placeholder sentences (unchanged by where the context goes)."""
        return self.tokenized_prompts.argmax(dim=-1)

    def shared_prefix(self):
        """What all class prompts share at the input (``SharedPrefix``), None with class-specific context."""
        if self.ctx.dim() == 3 or self.n_cls < 2:
            return None
        return SharedPrefix(self.shared_prefix_length)

    def assemble(self, ctx=None):
        """Prompts with the class name at the end: [SOS, ctx, name, ".", EOT, pad] per class."""
        ctx = self.ctx if ctx is None else ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)

    def forward(self):
        return self.assemble()
