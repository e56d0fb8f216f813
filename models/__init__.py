"""Shared CLIP model code: loading (``clip``), tokenisation, prompt-aware encoders (``encoders``)."""
from .clip import AVAILABLE_BACKBONES, load_clip, tokenize
from .encoders import ImageEncoder, TextEncoder

__all__ = ["AVAILABLE_BACKBONES", "load_clip", "tokenize", "ImageEncoder", "TextEncoder"]
