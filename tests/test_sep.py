"""SEP on the tiny CLIP: TFM, layer lists, losses, trainable set, checkpoints, official vs paper mode."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from engine.checkpoint import load_checkpoint
from tests.helpers import (assert_unchanged, coop_args, frozen_state, kill_then_resume, run_train, saved_logits,
                           train_on_batch, with_flags)
from trainers.sep import LAYER_LISTS, TokenFusion, layer_list

SEP_OPTS = ["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "6", "TRAINER.COOP.N_CTX_V", "4",
            "TRAINER.COOP.W", "8.0", "TRAINER.COOP.W_V", "6.0", "TEST.SAVE_LOGITS", "True"]
PAPER = ["TRAINER.SEP.PER_SAMPLE_ATTENTION", "True", "TRAINER.SEP.PER_INPUT_SELECTION", "True"]


def _args(root, clip, out, *extra, epochs=1):
    return coop_args(root, clip, out, *SEP_OPTS, *extra, trainer="SEP", epochs=epochs,
                     config="vit_b32_ep50_ctxv1.yaml")




def test_layer_lists_follow_the_official_table():
    assert len(LAYER_LISTS) == 20
    assert layer_list(0, 12) == list(range(1, 12)) and layer_list(3, 12) == [1, 3, 5, 7, 9, 11]
    assert layer_list(13, 12) == [1] and layer_list(19, 12) == [11]
    assert layer_list(0, 2) == [1]  # a shallower backbone keeps the blocks it has
    assert 0 not in sum(LAYER_LISTS, [])  # the raw input prompts always pass block 0 untouched


def _manual_tfm(tfm, pretrained, current, per_sample):
    """TFM written out with explicit matrices (docs/design/sep.md §3.4), one head."""
    ln1 = lambda t: F.layer_norm(t, t.shape[-1:], tfm.ln_1.weight, tfm.ln_1.bias)  # noqa: E731
    wq, wk, wv = tfm.attn.in_proj_weight.chunk(3)
    bq, bk, bv = tfm.attn.in_proj_bias.chunk(3)
    q, kv = ln1(current), ln1(pretrained)
    if not per_sample:
        q, kv = q.transpose(0, 1), kv.transpose(0, 1)
    scores = (q @ wq.t() + bq) @ (kv @ wk.t() + bk).transpose(-1, -2) / math.sqrt(q.shape[-1])
    attended = scores.softmax(-1) @ (kv @ wv.t() + bv)
    attended = attended @ tfm.attn.out_proj.weight.t() + tfm.attn.out_proj.bias
    if not per_sample:
        attended = attended.transpose(0, 1)
    z = 0.75 * pretrained + 0.25 * attended
    hidden = z.new_tensor(F.layer_norm(z, z.shape[-1:], tfm.ln_2.weight, tfm.ln_2.bias))
    mlp = tfm.mlp.c_fc(hidden)
    mlp = tfm.mlp.c_proj(mlp * torch.sigmoid(1.702 * mlp))
    return 0.75 * z + 0.25 * mlp


@pytest.mark.parametrize("per_sample", [False, True])
def test_token_fusion_matches_hand_computation(per_sample):
    torch.manual_seed(0)
    tfm = TokenFusion(64, 16, per_sample=per_sample)
    assert tfm.scale1.item() == 0.75 and tfm.scale2.item() == 0.75
    assert tfm.attn.num_heads == 1 and tfm.mlp.c_fc.bias is None
    pretrained, current = torch.randn(5, 3, 64), torch.randn(5, 3, 64)
    out = tfm(pretrained, current)
    assert out.shape == (5, 3, 64)
    assert torch.allclose(out, _manual_tfm(tfm, pretrained, current, per_sample), atol=1e-5)
    # which outputs a changed key/value token (sample 4, slot 2) reaches tells the attention axis
    changed = pretrained.clone()
    changed[4, 2] += 1
    reached = (tfm(changed, current) - out).abs().sum(-1) > 0
    if per_sample:  # within sample 4, every slot
        assert reached[4].all() and not reached[:4].any()
    else:  # official: slot 2 of every sample, no other slot
        assert reached[:, 2].all() and not reached[:, :2].any()


def _build(root, clip, tmp_path, *extra):
    return run_train(with_flags(_args(root, clip, str(tmp_path / "b"), *extra), "--no-train"))


def test_trainable_set_loss_terms_and_training(caltech_root, tiny_clip, tmp_path):
    trainer = _build(caltech_root, tiny_clip, tmp_path, "OPTIM.LR", "0.01", "INPUT.TRANSFORMS", "['normalize']")
    model, pl = trainer.model, trainer.model.prompt_learner
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("prompt_learner.")}
    assert {"prompt_learner.ctx", "prompt_learner.ctx_visual", "prompt_learner.VPT_fc.weight",
            "prompt_learner.text_fusion.0.scale1", "prompt_learner.visual_fusion.0.attn.in_proj_weight"} <= trainable
    assert pl.ctx.shape == (6, 64) and pl.ctx_visual.shape == (4, 64) and pl.VPT_fc.weight.shape == (6, 32)
    assert len(pl.text_fusion) == len(pl.visual_fusion) == 1  # L_IND 0 on a 2-block model

    trainer.init_prototypes()
    batch = next(iter(trainer.train_loader_x))
    image, label = batch["img"], batch["label"]
    loss, logits = trainer.compute_loss(image, label)
    with torch.no_grad():  # the loss of docs/design/sep.md §4 from the model's pieces
        f_txt = model.text_features()
        f_img, v_clip = model.encode_image(image)
        t_clip = model.frozen_text_features
        w = F.normalize(pl.VPT_fc.weight, dim=-1)
        expected = (F.cross_entropy(100 * f_img @ f_txt.t() * model.logit_scale.exp() / 100, label)
                    + 8.0 * (1 - (f_txt * t_clip).sum(-1).mean())
                    + 6.0 * (1 - (v_clip * f_img).sum(-1).mean())
                    + 0.5 * (F.cross_entropy(10 * f_img @ w.t(), label) + F.cross_entropy(10 * v_clip @ w.t(), label)))
    assert torch.allclose(loss, expected, atol=1e-5)

    frozen = frozen_state(model)
    losses = train_on_batch(trainer, batch, 8)
    assert losses[-1] < losses[0], losses
    graded = {n for n, p in model.named_parameters() if p.grad is not None}
    assert {"prompt_learner.ctx", "prompt_learner.ctx_visual", "prompt_learner.VPT_fc.weight"} <= graded
    assert graded <= trainable
    assert_unchanged(model, frozen)


def test_prototypes_are_normalised_class_means(caltech_root, tiny_clip, tmp_path):
    trainer = _build(caltech_root, tiny_clip, tmp_path, "INPUT.TRANSFORMS", "['normalize']")
    trainer.init_prototypes()
    feats, labels = [], []
    for batch in trainer.train_loader_x:
        feats.append(trainer.model.frozen_image_features(batch["img"]))
        labels.append(batch["label"])
    feats, labels = torch.cat(feats), torch.cat(labels)
    expected = F.normalize(torch.stack([feats[labels == c].mean(0) for c in range(6)]), dim=-1)
    assert torch.allclose(trainer.model.prompt_learner.VPT_fc.weight, expected, atol=1e-6)
    assert len(trainer.train_loader_x.dataset) == 24 and sum(len(b["label"]) for b in trainer.train_loader_x) == 24


def _image_logits_in_batches(model, images, sizes):
    model.eval()
    model.cache_text_features()
    out, start = [], 0
    with torch.no_grad():
        for size in sizes:
            out.append(model(images[start:start + size]))
            start += size
    return torch.cat(out)


def test_paper_mode_logits_do_not_depend_on_the_batch(caltech_root, tiny_clip, tmp_path):
    model = _build(caltech_root, tiny_clip, tmp_path, *PAPER).model
    images = torch.randn(6, 3, 32, 32)
    whole, single = (_image_logits_in_batches(model, images, s) for s in ([6], [1] * 6))
    assert torch.allclose(whole, single, atol=1e-5)


def test_official_mode_logits_depend_on_the_batch(caltech_root, tiny_clip, tmp_path):
    """Deliberate: upstream attends across the images of a batch and selects tokens per batch (Q1-Q3)."""
    model = _build(caltech_root, tiny_clip, tmp_path).model
    images = torch.randn(6, 3, 32, 32)
    whole, single = (_image_logits_in_batches(model, images, s) for s in ([6], [1] * 6))
    assert not torch.allclose(whole, single, atol=1e-4)


def test_save_eval_only_resume_round_trip(caltech_root, tiny_clip, tmp_path, monkeypatch):
    out = str(tmp_path / "train")
    run_train(_args(caltech_root, tiny_clip, out, epochs=2))
    state = load_checkpoint(os.path.join(out, "prompt_learner", "model.pth.tar-2"))["state_dict"]
    assert "VPT_fc.weight" in state and not any(k.startswith(("image_encoder.", "text_encoder.")) for k in state)
    ev = str(tmp_path / "eval")
    run_train(with_flags(_args(caltech_root, tiny_clip, ev), "--eval-only", "--model-dir", out, "--load-epoch", "2"))
    assert torch.equal(saved_logits(ev)["logits"], saved_logits(out)["logits"])
    assert "Prototype classifier" not in open(os.path.join(ev, "log.txt")).read()  # not needed for eval

    killed = str(tmp_path / "killed")
    kill_then_resume(_args(caltech_root, tiny_clip, killed, epochs=2), monkeypatch)
    assert torch.equal(saved_logits(killed)["logits"], saved_logits(out)["logits"])


def test_official_checkpoint_names_load(caltech_root, tiny_clip, tmp_path):
    """Upstream's keys: 12-clone banks with a misspelled attention name, unused template TFMs (docs/design/sep.md
    §9)."""
    out = str(tmp_path / "train")
    run_train(_args(caltech_root, tiny_clip, out))
    ours = load_checkpoint(os.path.join(out, "prompt_learner", "model.pth.tar-1"))["state_dict"]
    parts = {".attn.": ".promt_attention_visual.", ".ln_1.": ".ln_pa_1_visual.", ".ln_2.": ".ln_pa_2_visual.",
             ".mlp.c_fc.": ".mlp_pa_visual.c_fc1.", ".mlp.c_proj.": ".mlp_pa_visual.c_proj."}
    official = {}
    for k, v in ours.items():
        k = k.replace("text_fusion.", "prompt_projections.").replace("visual_fusion.", "visual_prompts.")
        for a, b in parts.items():
            k = k.replace(a, b)
        official[k] = v
    for bank in ("prompt_projections", "visual_prompts"):  # unused clones and template modules
        official[f"{bank}.5.scale1"] = torch.zeros(1)
        official[f"{bank}.0.ln_pa_1_token.weight"] = torch.zeros(64)
    official["meta_net_.scale1"] = torch.zeros(1)
    official["VPT_fc.weight"] = torch.zeros(9, 32)  # other class count: must be ignored
    os.makedirs(tmp_path / "official" / "prompt_learner")
    torch.save({"state_dict": official, "epoch": 1}, tmp_path / "official" / "prompt_learner" / "model.pth.tar-1")
    ev = str(tmp_path / "eval")
    run_train(with_flags(_args(caltech_root, tiny_clip, ev), "--eval-only", "--model-dir", str(tmp_path / "official"),
                     "--load-epoch", "1"))
    assert torch.equal(saved_logits(ev)["logits"], saved_logits(out)["logits"])


@pytest.mark.parametrize("prec", ["amp", "fp16"])
def test_other_precisions_run(caltech_root, tiny_clip, tmp_path, prec):
    """fp16 (fp16 on a CPU too) and amp (autocast) train and evaluate (upstream: both crash)."""
    out = str(tmp_path / prec)
    run_train(_args(caltech_root, tiny_clip, out, "TRAINER.COOP.PREC", prec))
    assert torch.isfinite(saved_logits(out)["logits"]).all()


def test_official_yaml_runs_unchanged(tmp_path):
    import train

    official = tmp_path / "sep.yaml"
    official.write_text("OPTIM:\n  NAME: adam\n  EPS: 1e-3\nTRAINER:\n  COOP:\n    CTX_INIT: False\n")
    cfg = train.setup_cfg(train.build_parser().parse_args(
        ["--trainer", "SEP", "--config-file", str(official), "TRAINER.COOP.N_CTX_V", "4", "TRAINER.COOP.L_IND", "3"]))
    assert cfg.OPTIM.EPS == 1e-3 and cfg.TRAINER.COOP.CTX_INIT == "" and cfg.TRAINER.COOP.L_IND == 3


def test_bf16_autocast_runs_without_loss_scaling(caltech_root, tiny_clip, tmp_path):
    out = str(tmp_path / "bf16")
    trainer = run_train(_args(caltech_root, tiny_clip, out, "TRAINER.COOP.PREC", "amp", "MODEL.AMP_DTYPE", "bf16"))
    assert trainer.scaler is None and torch.isfinite(saved_logits(out)["logits"]).all()
