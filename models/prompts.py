"""Fixed parts of class prompts and word-initialised context, shared by the text-prompt trainers."""
import torch

from engine.utils.tools import UserError

from .clip import bpe_length, tokenize


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
    slots would not line up with the words and we refuse (baselines.md Q3).
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
