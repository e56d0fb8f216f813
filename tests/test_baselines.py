"""CoCoOp, KgCoOp, MaPLe, IVLP and VPT on the tiny CLIP: what trains, checkpoints, official layouts."""
import os

import pytest
import torch

from engine.checkpoint import load_checkpoint
from tests.helpers import (assert_unchanged, coop_args, frozen_state, kill_then_resume, run_train, saved_logits,
                           train_on_batch, with_flags)

TRAINERS = {
    "CoCoOp": ("vit_b16_c4_ep10_batch1_ctxv1.yaml", ["TRAINER.COCOOP.PREC", "fp32"], {"prompt_learner"}),
    "KgCoOp": ("vit_b16_ep100_ctxv1.yaml", ["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.W", "8.0"],
               {"prompt_learner"}),
    "MaPLe": ("vit_b16_c2_ep5_batch4_2ctx.yaml", ["TRAINER.MAPLE.PREC", "fp32", "TRAINER.MAPLE.PROMPT_DEPTH", "2"],
              {"MultiModalPromptLearner"}),
    "IVLP": ("vit_b16_c2_ep5_batch4_2+2ctx.yaml", ["TRAINER.IVLP.PREC", "fp32", "TRAINER.IVLP.PROMPT_DEPTH_VISION",
                                                    "2", "TRAINER.IVLP.PROMPT_DEPTH_TEXT", "2"],
             {"VLPromptLearner"}),
    "VPT": ("vit_b16_c2_ep5_batch4_4.yaml", ["TRAINER.VPT.PROMPT_DEPTH_VISION", "2"], {"prompt_learner"}),
}
# exactly what the official trainers train (docs/design/baselines.md §9)
EXPECTED_TRAINABLE = {
    "CoCoOp": {"prompt_learner.ctx", "prompt_learner.meta_net.linear1.weight", "prompt_learner.meta_net.linear1.bias",
               "prompt_learner.meta_net.linear2.weight", "prompt_learner.meta_net.linear2.bias"},
    "KgCoOp": {"prompt_learner.ctx"},
    "MaPLe": {"prompt_learner.ctx", "prompt_learner.proj.weight", "prompt_learner.proj.bias",
              "prompt_learner.compound_prompts_text.0", "prompt_learner.compound_prompt_projections.0.weight",
              "prompt_learner.compound_prompt_projections.0.bias"},
    "IVLP": {"prompt_learner.ctx", "prompt_learner.text_deep.0", "prompt_learner.visual_prompts.visual_ctx",
             "prompt_learner.visual_prompts.visual_deep.0"},
    "VPT": {"prompt_learner.visual_ctx", "prompt_learner.visual_deep.0"},
}


def _args(trainer, root, clip, out, *extra, epochs=1):
    cfg, opts, _ = TRAINERS[trainer]
    return coop_args(root, clip, out, *opts, "TEST.SAVE_LOGITS", "True", *extra, trainer=trainer, epochs=epochs,
                     config=cfg)




@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_steps_reduce_loss_train_exactly_the_prompts_and_keep_clip(trainer, caltech_root, tiny_clip, tmp_path):
    built = run_train(with_flags(_args(trainer, caltech_root, tiny_clip, str(tmp_path / "r"), "OPTIM.NAME", "sgd",
                                   "OPTIM.LR", "0.05", "OPTIM.WARMUP_EPOCH", "0", "INPUT.TRANSFORMS",
                                   "['normalize']"), "--no-train"))
    model = built.model
    frozen = frozen_state(model)
    losses = train_on_batch(built, next(iter(built.train_loader_x)), 8)
    assert losses[-1] < losses[0], losses
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == EXPECTED_TRAINABLE[trainer]
    assert {n for n, p in model.named_parameters() if p.requires_grad} == EXPECTED_TRAINABLE[trainer]
    assert_unchanged(model, frozen)


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_save_eval_only_and_resume_give_identical_logits(trainer, caltech_root, tiny_clip, tmp_path, monkeypatch):
    out = str(tmp_path / "train")
    run_train(_args(trainer, caltech_root, tiny_clip, out, epochs=2))
    name = next(iter(TRAINERS[trainer][2]))
    saved = load_checkpoint(os.path.join(out, name, "model.pth.tar-2"))["state_dict"]
    # only the prompt module is saved, never the frozen CLIP (docs/design/baselines.md B1)
    assert not any(k.startswith(("image_encoder.", "text_encoder.", "visual.", "transformer.", "token_embedding"))
                   for k in saved)

    ev = str(tmp_path / "eval")
    run_train(with_flags(_args(trainer, caltech_root, tiny_clip, ev), "--eval-only", "--model-dir", out, "--load-epoch",
                     "2"))
    assert torch.equal(saved_logits(ev)["logits"], saved_logits(out)["logits"])

    killed = str(tmp_path / "killed")
    kill_then_resume(_args(trainer, caltech_root, tiny_clip, killed, epochs=2), monkeypatch)
    assert torch.equal(saved_logits(killed)["logits"], saved_logits(out)["logits"])


def _official_layout(trainer, state):
    """Our prompt-module state in the official whole-model layout (names per docs/design/baselines.md §9)."""
    frozen = {"image_encoder.conv1.weight": torch.zeros(1), "text_encoder.ln_final.weight": torch.zeros(1),
              "logit_scale": torch.zeros(())}
    out = dict(frozen)
    for k, v in state.items():
        if trainer == "MaPLe":
            out["prompt_learner." + k] = v
        elif k.startswith("visual_prompts.visual_ctx") or k == "visual_ctx":
            out["image_encoder.VPT"] = v
        elif "visual_deep." in k:
            out[f"image_encoder.transformer.resblocks.{int(k.rsplit('.', 1)[1]) + 1}.VPT_shallow"] = v
        elif k.startswith("text_deep."):
            out[f"text_encoder.transformer.resblocks.{int(k.rsplit('.', 1)[1]) + 1}.VPT_shallow"] = v
        else:
            out["prompt_learner." + k] = v
    return out


@pytest.mark.parametrize("trainer", ["MaPLe", "IVLP", "VPT"])
def test_official_whole_model_checkpoints_load(trainer, caltech_root, tiny_clip, tmp_path):
    out = str(tmp_path / "train")
    run_train(_args(trainer, caltech_root, tiny_clip, out))
    name = next(iter(TRAINERS[trainer][2]))
    ours = load_checkpoint(os.path.join(out, name, "model.pth.tar-1"))
    official = str(tmp_path / "official")
    os.makedirs(os.path.join(official, name))
    torch.save({"state_dict": _official_layout(trainer, ours["state_dict"]), "epoch": 1, "optimizer": None,
                "scheduler": None, "val_result": None}, os.path.join(official, name, "model.pth.tar-1"))
    ev = str(tmp_path / "eval")
    run_train(with_flags(_args(trainer, caltech_root, tiny_clip, ev), "--eval-only", "--model-dir", official,
                     "--load-epoch", "1"))
    assert torch.equal(saved_logits(ev)["logits"], saved_logits(out)["logits"])


def test_checkpoint_from_another_trainer_is_refused(caltech_root, tiny_clip, tmp_path):
    out = str(tmp_path / "coop")
    run_train(coop_args(caltech_root, tiny_clip, out, "TRAINER.COOP.N_CTX", "2", "TRAINER.COOP.PREC", "fp32",
                        epochs=1))
    os.rename(os.path.join(out, "prompt_learner"), os.path.join(out, "VLPromptLearner"))
    with pytest.raises(SystemExit):
        run_train(with_flags(_args("IVLP", caltech_root, tiny_clip, str(tmp_path / "e")), "--eval-only", "--model-dir",
                         out, "--load-epoch", "1"))


def test_deep_prompts_sit_where_upstream_puts_them(caltech_root, tiny_clip, tmp_path):
    """MaPLe: text rows 1..n and the last n vision tokens equal the layer's prompts before block 1 only."""
    built = run_train(with_flags(_args("MaPLe", caltech_root, tiny_clip, str(tmp_path / "m")), "--no-train"))
    model, pl = built.model, built.model.prompt_learner
    model.text_encoder.share_prefix = False  # whole sequences reach the blocks (sharing: its own test)
    seen = {}

    def capture(tag, i):
        return lambda module, args, kwargs=None: seen.setdefault((tag, i), args[0].detach().clone())

    # a block's first LayerNorm receives the block's input tokens
    handles = [b.ln_1.register_forward_pre_hook(capture("text", i)) for i, b in
               enumerate(model.text_encoder.transformer.resblocks)]
    handles += [b.ln_1.register_forward_pre_hook(capture("vision", i)) for i, b in
                enumerate(model.image_encoder.visual.transformer.resblocks)]
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    for h in handles:
        h.remove()
    n = pl.n_ctx
    text0, text1 = seen[("text", 0)], seen[("text", 1)]
    assert torch.equal(text1[:, 1:1 + n], pl.compound_prompts_text[0].expand(text1.shape[0], -1, -1))
    assert not torch.equal(text0[:, 1:1 + n], text1[:, 1:1 + n])
    first, deep = pl.visual_prompts()
    vision1 = seen[("vision", 1)]
    assert vision1.shape[1] == 17 + n  # class token + 16 patches + n prompts
    assert torch.allclose(vision1[:, -n:], deep[0].expand(2, -1, -1))


def test_maple_fp32_works_and_widths_come_from_the_backbone(caltech_root, tiny_clip, tmp_path):
    built = run_train(with_flags(_args("MaPLe", caltech_root, tiny_clip, str(tmp_path / "m")), "--no-train"))
    pl = built.model.prompt_learner
    assert pl.proj.weight.dtype == torch.float32  # upstream halves it unconditionally and crashes in fp32
    assert pl.proj.weight.shape == (built.model.image_encoder.width, built.model.text_encoder.width)
    assert torch.equal(pl.compound_prompt_projections[0].weight, pl.compound_prompt_projections[0].weight)


def test_kgcoop_loss_adds_weighted_knowledge_term(caltech_root, tiny_clip, tmp_path):
    import torch.nn.functional as F

    from models.prompted_clip import normalize

    built = run_train(with_flags(_args("KgCoOp", caltech_root, tiny_clip, str(tmp_path / "k")), "--no-train"))
    model = built.model
    image, label = next(iter(built.train_loader_x))["img"], next(iter(built.train_loader_x))["label"]
    loss, logits = built.compute_loss(image, label)
    g = normalize(model.text_features())
    w = model.anchor_text_features
    score = 1 - (g * w).sum(-1).div(g.norm(dim=-1) * w.norm(dim=-1)).mean()
    assert torch.allclose(loss, F.cross_entropy(logits, label) + 8.0 * score, atol=1e-6)
    assert model.prompt_learner.n_ctx == 4  # CTX_INIT "a photo of a" overrides N_CTX


def test_kgcoop_official_yaml_ctx_init_true_is_read(tmp_path):
    import train

    official = tmp_path / "kg.yaml"
    official.write_text("TRAINER:\n  COOP:\n    CTX_INIT: True\n")
    cfg = train.setup_cfg(train.build_parser().parse_args(["--trainer", "KgCoOp", "--config-file", str(official)]))
    assert cfg.TRAINER.COOP.CTX_INIT == "a photo of a"


@pytest.mark.parametrize("trainer", ["MaPLe", "IVLP", "VPT", "CoCoOp"])
def test_text_and_vision_widths_may_differ(trainer, caltech_root, tmp_path):
    """Widths come from the backbone (ViT-B/16: 512 text, 768 vision; ViT-L/14: 768 / 1024)."""
    from tests.helpers import make_tiny_clip

    clip = make_tiny_clip(str(tmp_path / "wide.pt"), width=64, vision_width=128, embed_dim=48)
    built = run_train(with_flags(_args(trainer, caltech_root, clip, str(tmp_path / "w")), "--no-train"))
    with torch.no_grad():
        assert built.model(torch.randn(2, 3, 32, 32)).shape == (2, 6)


UPSTREAM_TEXT_PATH = ["MODEL.TEXT_TRUNCATE", "False", "MODEL.TEXT_SHARED_PREFIX", "False",
                      "TEST.CACHE_TEXT_FEATURES", "False"]


def _sep_args(root, clip, out, *extra):
    return coop_args(root, clip, out, "TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "6", "TRAINER.COOP.N_CTX_V",
                     "4", "TEST.SAVE_LOGITS", "True", *extra, trainer="SEP", config="vit_b32_ep50_ctxv1.yaml")


@pytest.mark.parametrize("trainer", ["CoCoOp", "IVLP", "MaPLe", "SEP"])
def test_exact_speedups_keep_the_logits(trainer, caltech_root, tiny_clip, tmp_path):
    """The exact speed-ups (MODEL.TEXT_TRUNCATE, MODEL.TEXT_SHARED_PREFIX, TEST.CACHE_TEXT_FEATURES) against
    upstream's full path, through train.py."""
    args = (lambda out, *x: _sep_args(caltech_root, tiny_clip, out, *x)) if trainer == "SEP" else (
        lambda out, *x: _args(trainer, caltech_root, tiny_clip, out, *x))
    fast, slow = str(tmp_path / "fast"), str(tmp_path / "slow")
    run_train(with_flags(args(fast), "--eval-only", "--untrained"))
    run_train(with_flags(args(slow, *UPSTREAM_TEXT_PATH), "--eval-only", "--untrained"))
    a, b = saved_logits(fast)["logits"], saved_logits(slow)["logits"]
    assert torch.allclose(a, b, atol=1e-4) and torch.equal(a.argmax(1), b.argmax(1))


def _perturbed(trainer, scale=0.5):
    with torch.no_grad():  # away from the initial values, where identical prompts could hide mistakes
        g = torch.Generator().manual_seed(0)
        for p in trainer.model.prompt_learner.parameters():
            p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=g).to(p.dtype))
    return trainer


def _loss_and_grads(trainer, images, labels):
    trainer.model.zero_grad(set_to_none=True)
    loss, _ = trainer.compute_loss(images, labels)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in trainer.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("trainer,extra,shared", [
    ("CoOp", [], True), ("CoOp", ["TRAINER.COOP.CLASS_TOKEN_POSITION", "middle"], False),
    ("CoOp", ["TRAINER.COOP.CSC", "True"], False), ("KgCoOp", [], True), ("CoCoOp", [], True), ("MaPLe", [], True),
    # fp16-rounded prompts have fp16-rounded gradients, which would hide the comparison
    ("IVLP", ["TRAINER.IVLP.FP16_PROMPT_ROUNDING", "False"], True), ("ALIGN", [], True),
    # with upstream's fp16 rounding of every class's copy, training keeps the copies (their gradients are
    # rounded before they are summed, as upstream); evaluation still shares
    ("IVLP", [], False)])
def test_shared_prefix_gives_the_same_loss_and_gradients(trainer, extra, shared, caltech_root, tiny_clip, tmp_path):
    """MODEL.TEXT_SHARED_PREFIX: the start token and context (and template words) encoded once per group of
    rows gives the full per-class computation's loss and prompt gradients, and really encodes fewer tokens."""
    if trainer in TRAINERS:
        args = _args(trainer, caltech_root, tiny_clip, str(tmp_path / "o"), *extra)
    else:
        config = {"CoOp": "vit_b32.yaml", "ALIGN": "vit_b16_c2_ep5_batch4_2ctx.yaml"}[trainer]
        opts = {"CoOp": ["TRAINER.COOP.PREC", "fp32"],
                "ALIGN": ["TRAINER.MMP.PREC", "fp32", "TRAINER.MMP.TEXT_PROMPT_DEPTH", "2"]}[trainer]
        args = coop_args(caltech_root, tiny_clip, str(tmp_path / "o"), *opts, *extra, trainer=trainer,
                         config=config)
    built = _perturbed(run_train(with_flags(args, "--no-train")))
    model = built.model
    batch = next(iter(built.train_loader_x))
    images, labels = batch["img"][:4], batch["label"][:4]
    counted = []
    block = model.text_encoder.transformer.resblocks[0]
    handle = block.mlp.register_forward_hook(lambda m, inp, out: counted.append(inp[0].shape[:-1].numel()))
    try:
        shared_loss, shared_grads = _loss_and_grads(built, images, labels)
        shared_tokens = sum(counted)
        counted.clear()
        model.text_encoder.share_prefix = False
        full_loss, full_grads = _loss_and_grads(built, images, labels)
        full_tokens = sum(counted)
    finally:
        handle.remove()
        model.text_encoder.share_prefix = True
    torch.testing.assert_close(shared_loss, full_loss, rtol=1e-5, atol=1e-5)
    assert shared_grads.keys() == full_grads.keys() and shared_grads
    for name in full_grads:
        # fp32 rounding relative to the gradient's scale (truncation on/off differs as much)
        scale = full_grads[name].abs().max().item()
        torch.testing.assert_close(shared_grads[name], full_grads[name], rtol=0, atol=2e-5 * scale,
                                   msg=lambda m: f"{name}: {m}")
    assert (shared_tokens < 0.8 * full_tokens) if shared else (shared_tokens == full_tokens)
