"""CLIP loading (local files, JIT archives, download with mocked network) and the shared encoders."""
import io
import os
import warnings

import pytest
import torch
from open_clip.model import build_model_from_openai_state_dict

import engine.utils.download as download
from engine.utils.tools import UserError
from models import ImageEncoder, TextEncoder, load_clip, tokenize
from models import clip as clip_module

DEMO_CLIP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "demo_clip",
                         "synthetic_clip.pt")


def _reference(path):
    sd = torch.load(path)
    return build_model_from_openai_state_dict(dict(sd), cast_dtype=None).float().eval()


def test_encoders_equal_open_clip_without_prompts(tiny_clip):
    model = load_clip("custom", tiny_clip, "fp32")
    ref = _reference(tiny_clip)
    tokens = tokenize(["a photo of a dog.", "an ant on a barrel", "x"])
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(TextEncoder(model).encode_tokens(tokens), ref.encode_text(tokens), atol=1e-5)
        assert torch.allclose(ImageEncoder(model)(images), ref.encode_image(images), atol=1e-5)
        pooled, tokens_out = ImageEncoder(model)(images, return_tokens=True)
        assert tokens_out.shape == (3, 17, 32) and torch.allclose(pooled, tokens_out[:, 0], atol=1e-5)
        t_pooled, t_tokens = TextEncoder(model).encode_tokens(tokens, return_tokens=True)
        assert torch.allclose(t_pooled, t_tokens[torch.arange(3), tokens.argmax(-1)], atol=1e-5)


def test_encoder_gradients_equal_open_clip(tiny_clip):
    """Our blocks run through their weights (not nn.MultiheadAttention's forward): same values and gradients."""
    model = load_clip("custom", tiny_clip, "fp32")
    ref = _reference(tiny_clip)
    tokens = tokenize(["a photo of a dog.", "an ant on a barrel"])
    images = torch.randn(2, 3, 32, 32)
    grads = []
    for text_fn, image_fn, clip in ((TextEncoder(model).encode_tokens, ImageEncoder(model), model),
                                    (ref.encode_text, ref.encode_image, ref)):
        for p in (clip.token_embedding.weight, clip.visual.conv1.weight):
            p.requires_grad_(True)
            p.grad = None
        (text_fn(tokens).pow(2).sum() + image_fn(images).pow(2).sum()).backward()
        grads.append((clip.token_embedding.weight.grad, clip.visual.conv1.weight.grad))
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * theirs.abs().max().item())


def test_layer_hook_sees_every_layer_and_can_replace_tokens(tiny_clip):
    text = TextEncoder(load_clip("custom", tiny_clip, "fp32"))
    tokens = tokenize(["a photo of a dog."])
    seen = []

    def hook(i, x):
        seen.append(i)
        return x

    with torch.no_grad():
        base = text.encode_tokens(tokens)
        assert torch.equal(text.encode_tokens(tokens, layer_hook=hook), base)
        assert seen == [0, 1]
        # a token after the end token cannot change the pooled feature (causal mask)
        late = text.encode_tokens(tokens, layer_hook=lambda i, x: torch.cat([x[:, :20], x[:, 20:] * 3], 1))
        assert torch.allclose(late, base, atol=1e-6)
        early = text.encode_tokens(tokens, layer_hook=lambda i, x: torch.cat([x[:, :1], x[:, 1:2] * 3, x[:, 2:]], 1))
        assert not torch.allclose(early, base, atol=1e-3)


def test_torchscript_archive_loads_like_the_state_dict(tiny_clip, tmp_path):
    ref = _reference(tiny_clip)
    example = (torch.randn(1, 3, 32, 32), tokenize(["a"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(ref, example, strict=False, check_trace=False)
    traced.save(str(tmp_path / "jit.pt"))
    a, b = load_clip("custom", str(tmp_path / "jit.pt"), "fp32"), load_clip("custom", tiny_clip, "fp32")
    for (ka, va), (kb, vb) in zip(sorted(a.state_dict().items()), sorted(b.state_dict().items())):
        assert ka == kb and torch.equal(va, vb)


def test_named_architecture_mismatch_is_reported(tiny_clip):
    with pytest.raises(UserError) as e:
        load_clip("ViT-B/16", tiny_clip, "fp32")
    assert "does not hold ViT-B/16 weights" in str(e.value) and "vision_width 64 (expected 768)" in str(e.value)


def test_unknown_backbone_name_suggests():
    with pytest.raises(UserError, match="ViT-B/16"):
        load_clip("ViT-B/61", "", "fp32")


def test_not_a_clip_file(tmp_path):
    torch.save({"a": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(UserError, match="not a CLIP checkpoint"):
        load_clip("custom", str(tmp_path / "x.pt"), "fp32")
    with pytest.raises(UserError, match="does not exist"):
        load_clip("custom", str(tmp_path / "missing.pt"), "fp32")


def test_fp16_runs_in_fp16_on_a_cpu_too(tiny_clip):
    """PREC fp16 is OpenAI's mixed storage on every device (no silent change of precision)."""
    model = load_clip("custom", tiny_clip, "fp16", "cpu")
    assert model.visual.conv1.weight.dtype == torch.float16 and model.text_projection.dtype == torch.float16
    assert model.ln_final.weight.dtype == torch.float32
    tokens = tokenize(["a photo of a dog."])
    features = TextEncoder(model).encode_tokens(tokens)
    assert features.dtype == torch.float16 and torch.isfinite(features).all()
    reference = TextEncoder(load_clip("custom", tiny_clip, "fp32", "cpu")).encode_tokens(tokens)
    assert torch.allclose(features.float(), reference, atol=5e-3 * reference.abs().max())


def test_fp16_mixed_storage_matches_openai_layout(tiny_clip):
    """OpenAI's fp16 mode: matmul weights fp16, LayerNorm/embeddings fp32 (docs/design/baselines.md §1.1)."""
    sd = torch.load(tiny_clip)
    model = build_model_from_openai_state_dict(dict(sd), cast_dtype=torch.float16)
    assert model.visual.conv1.weight.dtype == torch.float16 and model.text_projection.dtype == torch.float16
    assert model.ln_final.weight.dtype == torch.float32 and model.token_embedding.weight.dtype == torch.float32


def test_all_parameters_frozen(tiny_rn_clip):
    model = load_clip("custom", tiny_rn_clip, "fp32")
    assert not any(p.requires_grad for p in model.parameters())
    assert ImageEncoder(model)(torch.randn(2, 3, 32, 32)).shape == (2, 32)


class _FakeResponse(io.BytesIO):
    def __init__(self, data, status=200):
        super().__init__(data)
        self.status = status
        self.headers = {"Content-Length": str(len(data))}


def test_download_resumes_and_verifies(tmp_path, monkeypatch, tiny_clip):
    payload = open(tiny_clip, "rb").read()
    import hashlib

    sha = hashlib.sha256(payload).hexdigest()
    calls = []

    def fake_open(url, start=0):
        calls.append(start)
        return _FakeResponse(payload[start:], 206 if start else 200), len(payload), start > 0

    monkeypatch.setattr(download, "_open_url", fake_open)
    dst = str(tmp_path / "w.pt")
    with open(dst + ".part", "wb") as f:  # an interrupted earlier download
        f.write(payload[:1000])
    download.download_url("http://example.invalid/w.pt", dst, sha256=sha)
    assert calls == [1000] and open(dst, "rb").read() == payload
    download.download_url("http://example.invalid/w.pt", dst, sha256=sha)  # idempotent: no new request
    assert calls == [1000]
    os.remove(dst)
    with pytest.raises(UserError, match="checksum"):
        download.download_url("http://example.invalid/w.pt", dst, sha256="0" * 64)
    assert not os.path.exists(dst) and not os.path.exists(dst + ".part")


def test_named_backbone_downloads_into_cache_and_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VLPROMPT_CACHE", str(tmp_path / "cache"))
    urls = []

    def offline(url, start=0):
        urls.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr(download, "_open_url", offline)
    with pytest.raises(UserError) as e:
        clip_module.resolve_weights_file("ViT-B/16")
    assert urls and urls[0].endswith("ViT-B-16.pt")
    assert "MODEL.BACKBONE.PATH" in str(e.value) and urls[0] in str(e.value)


def test_pinned_open_clip_takes_the_fast_path(tiny_clip, capsys):
    """The blocks of the pinned open_clip are run through their weights (and so can share prefixes); an
    upgrade that changes them must not silently fall back."""
    for path in (tiny_clip, DEMO_CLIP):
        model = load_clip("custom", path, "fp32", "cpu")
        assert TextEncoder(model).fast_blocks and ImageEncoder(model).fast_blocks
    assert "not OpenAI-style" not in capsys.readouterr().out


def test_slow_path_is_reported_once(tiny_clip, capsys, monkeypatch):
    import models.encoders as enc

    monkeypatch.setattr(enc, "_SLOW_PATH_REPORTED", set())
    monkeypatch.setattr(enc, "_is_openai_block", lambda block: False)
    model = load_clip("custom", tiny_clip, "fp32", "cpu")
    text = enc.TextEncoder(model)
    enc.TextEncoder(model)
    out = capsys.readouterr().out
    assert not text.fast_blocks and out.count("MODEL.TEXT_SHARED_PREFIX cannot be honoured") == 1
    tokens = torch.zeros(2, 77, dtype=torch.long)
    tokens[:, 0], tokens[:, 3] = 49406, 49407
    expected = model.encode_text(tokens)  # the blocks' own forward gives CLIP's features
    assert torch.allclose(text.encode_tokens(tokens), expected, atol=1e-5)


def test_resnet_output_tokens_are_the_attention_pool_at_every_position(tmp_path):
    """PLOT's local features: position 0 is CLIP's image embedding, position 1+i the attention pool queried
    by grid cell i (checked against nn.MultiheadAttention built from the pool's weights)."""
    from tests.helpers import make_tiny_clip

    model = load_clip("custom", make_tiny_clip(str(tmp_path / "rn.pt"), vit=False, image_size=64), "fp32", "cpu")
    encoder = ImageEncoder(model)
    images = torch.randn(2, 3, 64, 64)
    pooled, tokens = encoder(images, return_tokens=True)
    assert torch.allclose(pooled, model.visual(images), atol=1e-5)
    pool = model.visual.attnpool
    width = pool.q_proj.weight.shape[1]
    mha = torch.nn.MultiheadAttention(width, pool.num_heads, kdim=width, vdim=width)
    mha.in_proj_weight = torch.nn.Parameter(torch.cat([pool.q_proj.weight, pool.k_proj.weight, pool.v_proj.weight]))
    mha.in_proj_bias = torch.nn.Parameter(torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]))
    mha.out_proj = pool.c_proj
    trunk = model.visual.layer4(model.visual.layer3(model.visual.layer2(model.visual.layer1(model.visual.stem(images)))))
    x = trunk.flatten(2).permute(2, 0, 1)
    x = torch.cat([x.mean(0, keepdim=True), x]) + pool.positional_embedding[:, None]
    expected = mha(x, x, x, need_weights=False)[0].transpose(0, 1)
    assert tokens.shape == (2, trunk.shape[2] * trunk.shape[3] + 1, model.visual.output_dim)
    assert torch.allclose(tokens, expected, atol=1e-5)
