"""PromptSRC (docs/design/promptsrc.md) on the tiny CLIP: the loss, GPA, frozen weights, checkpoints, configs."""
import hashlib
import os

import pytest
import torch
import torch.nn.functional as F

from engine.checkpoint import load_checkpoint
from models.clip import tokenize
from models.prompted_clip import normalize
from tests.helpers import (assert_unchanged, coop_args, frozen_state, kill_then_resume, run_train, saved_logits,
                           with_flags)
from models.prompted_clip import template_text_features
from models.templates import PROMPTSRC_TEMPLATES
from trainers.promptsrc import gaussian_epoch_weights, gpa_fold, openai_fp16_names

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "vit_b16_c2_ep20_batch4_4+4ctx.yaml"
# the tiny CLIP has 2 layers: depth 2 puts deep prompts before block 1 in both towers
SMALL = ["TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
         "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TEST.SAVE_LOGITS", "True"]
DETERMINISTIC = ["OPTIM.NAME", "sgd", "OPTIM.WARMUP_EPOCH", "0", "OPTIM.LR", "0.05", "INPUT.TRANSFORMS",
                 "['normalize']"]
GPA3 = ["TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1"]  # weights 0.274 / 0.452 / 0.274


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _args(root, clip, out, *extra, epochs=1, config=CONFIG):
    return coop_args(root, clip, out, *SMALL, *extra, trainer="PromptSRC", epochs=epochs, config=config)


def _perturbed(trainer, scale=0.5):
    with torch.no_grad():  # away from the initial values, where prompted and frozen features nearly agree
        g = torch.Generator().manual_seed(0)
        for p in trainer.model.prompt_learner.parameters():
            p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=g).to(p.dtype))
    return trainer


# ----- GPA -----

def test_gpa_weights_sum_to_one_and_follow_the_official_configs():
    for n, mean, std in [(20, 15, 1), (20, 6, 10), (50, 30, 30), (50, 45, 5), (3, 2, 1), (1, 15, 1)]:
        w = gaussian_epoch_weights(n, mean, std)
        assert len(w) == n and abs(sum(w) - 1.0) < 1e-12 and all(x >= 0 for x in w)
    base2new = gaussian_epoch_weights(20, 15, 1)  # docs/design/promptsrc.md §7.1
    assert max(range(20), key=base2new.__getitem__) == 14 and round(base2new[14], 4) == 0.3989
    assert round(base2new[13], 4) == round(base2new[15], 4) == 0.2420 and base2new[8] < 1e-8
    assert [round(x, 5) for x in gaussian_epoch_weights(20, 6, 10)[:2]] == [0.0554, 0.05795]
    assert [round(x, 3) for x in gaussian_epoch_weights(3, 2, 1)] == [0.274, 0.452, 0.274]
    assert gaussian_epoch_weights(1, 15, 1) == [1.0]  # one epoch: GPA is the identity


def test_gpa_replaces_the_prompts_by_the_weighted_mean_of_the_epochs(caltech_root, tiny_clip, tmp_path):
    built = run_train(with_flags(_args(caltech_root, tiny_clip, str(tmp_path / "g"), *DETERMINISTIC, *GPA3,
                                       "TRAINER.PROMPTSRC.GPA_FROZEN_ROUNDING", "False", epochs=3), "--no-train"))
    per_epoch = []
    real_add = built.gpa.add
    built.gpa.add = lambda epoch, tensors: (per_epoch.append({k: v.detach().clone() for k, v in tensors.items()}),
                                            real_add(epoch, tensors))[1]
    built.train()
    assert len(per_epoch) == 3
    weights = gaussian_epoch_weights(3, 2, 1)
    stored = dict(built.model.prompt_learner.named_parameters())
    for name in per_epoch[0]:
        mean = sum(w * p[name].double() for w, p in zip(weights, per_epoch))
        assert torch.allclose(stored[name].double(), mean, atol=1e-6), name
        assert not torch.equal(stored[name], per_epoch[-1][name])  # not simply the last epoch
        # and exactly upstream's fold (sum + value * w, in the tensor's dtype)
        fold = per_epoch[0][name] * weights[0]
        for w, p in zip(weights[1:], per_epoch[1:]):
            fold = fold + p[name] * w
        assert torch.equal(stored[name], fold), name
    # the checkpoint holds the GPA prompts, and only the prompt module (no GPA sum once training is over)
    saved = load_checkpoint(os.path.join(str(tmp_path / "g"), "VLPromptLearner", "model.pth.tar-3"))["state_dict"]
    assert torch.equal(saved["ctx"], stored["ctx"])
    assert not any(k.startswith(("_gpa.sum", "image_encoder.", "text_encoder.", "ZS_image_encoder")) for k in saved)


def test_frozen_encoders_unchanged_after_training_without_the_frozen_fold(caltech_root, tiny_clip, tmp_path):
    built = run_train(with_flags(_args(caltech_root, tiny_clip, str(tmp_path / "f"), *GPA3,
                                       "TRAINER.PROMPTSRC.GPA_FROZEN_ROUNDING", "False", epochs=3), "--no-train"))
    frozen = frozen_state(built.model)
    built.train()
    assert_unchanged(built.model, frozen)


def test_default_folds_the_frozen_weights_as_upstream_gpa_does(caltech_root, tiny_clip, tmp_path):
    """Upstream aggregates the whole state dict: a frozen W becomes ((W·w1 + W·w2) + W·w3) (Q4)."""
    built = run_train(with_flags(_args(caltech_root, tiny_clip, str(tmp_path / "d"), *GPA3, epochs=3), "--no-train"))
    pristine = {k: v.clone() for k, v in built.model.state_dict().items()}
    built.train()
    weights = gaussian_epoch_weights(3, 2, 1)
    after = built.model.state_dict()
    folded = [k for k in pristine if not torch.equal(after[k], pristine[k])]
    assert "text_encoder.transformer.resblocks.0.attn.in_proj_weight" in folded
    for k in ("image_encoder.visual.conv1.weight", "text_encoder.ln_final.weight", "logit_scale",
              "prompt_learner.token_prefix", "prompt_learner.token_suffix"):
        assert torch.equal(after[k], gpa_fold(pristine[k], weights)), k
    assert torch.equal(after["text_encoder.token_embedding.weight"], pristine["text_encoder.token_embedding.weight"])


def test_resume_continues_the_gpa_sum_exactly(caltech_root, tiny_clip, tmp_path, monkeypatch):
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    run_train(_args(caltech_root, tiny_clip, whole, *GPA3, epochs=3))
    kill_then_resume(_args(caltech_root, tiny_clip, killed, *GPA3, epochs=3), monkeypatch, kill_epoch=2)
    assert torch.equal(saved_logits(killed)["logits"], saved_logits(whole)["logits"])


# ----- the loss and its targets -----

def test_loss_is_ce_plus_the_three_self_regularising_terms(caltech_root, tiny_clip, tmp_path):
    built = _perturbed(run_train(with_flags(_args(caltech_root, tiny_clip, str(tmp_path / "l")), "--no-train")))
    model = built.model
    batch = next(iter(built.train_loader_x))
    image, label = batch["img"], batch["label"]
    loss, logits = built.compute_loss(image, label)
    with torch.no_grad():
        text = normalize(model.text_features())
        prompted = normalize(model.image_features(image))
        frozen_image = normalize(model.image_encoder(image))
        names = [c.replace("_", " ") for c in model.classnames]
        raw = torch.stack([model.text_encoder.encode_tokens(tokenize([t.format(c) for c in names]))
                           for t in PROMPTSRC_TEMPLATES]).mean(0)  # mean of unnormalised features (Q5)
        frozen_text = normalize(raw)
        scale = model.logit_scale.exp()
        z, z0 = scale * prompted @ text.t(), scale * frozen_image @ frozen_text.t()
        p0 = z0.softmax(1)
        kl = (p0 * (p0.log() - z.log_softmax(1))).sum() / z.numel()
        expected = (F.cross_entropy(z, label) + 25 * (text - frozen_text).abs().mean()
                    + 10 * (prompted - frozen_image).abs().mean() + kl)
    assert torch.allclose(logits, z, atol=1e-5)
    assert torch.allclose(loss, expected, rtol=1e-5), (loss, expected)
    assert torch.allclose(model.frozen_text_features(), frozen_text, atol=1e-5)
    assert not torch.allclose(frozen_text, normalize(template_text_features(
        model.text_encoder, model.classnames, PROMPTSRC_TEMPLATES, normalize_each=True, fp32=True)), atol=1e-4)
    # the regularisers are really in the loss: without them it is the cross-entropy
    ce_only = run_train(with_flags(_args(caltech_root, tiny_clip, str(tmp_path / "c"), "TRAINER.PROMPTSRC."
                                         "TEXT_LOSS_WEIGHT", "0", "TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT", "0"),
                                   "--no-train"))
    ce_only.model.prompt_learner.load_state_dict(model.prompt_learner.state_dict())
    ce_loss, _ = ce_only.compute_loss(image, label)
    assert torch.allclose(ce_loss, F.cross_entropy(z, label) + kl, rtol=1e-5)


def test_templates_are_the_official_sixty():
    assert len(PROMPTSRC_TEMPLATES) == 60 and PROMPTSRC_TEMPLATES[0] == "a photo of a {}."
    digest = hashlib.sha256("\n".join(PROMPTSRC_TEMPLATES).encode()).hexdigest()
    assert digest == "dc3398ed3ffc7c259342582bc0f36d7ac66c4dee17981a37b77b0fc9c23d4f72"  # promptsrc.md §4.1


def test_fp16_layout_names_are_those_of_openai_fp16_storage(tiny_clip):
    """The fold of an fp16-trained checkpoint evaluated in fp32 must know which tensors were fp16 (§7.3)."""
    from open_clip.model import build_model_from_openai_state_dict

    from models.clip import read_openai_state_dict
    from models.encoders import ImageEncoder, TextEncoder

    clip = build_model_from_openai_state_dict(read_openai_state_dict(tiny_clip), cast_dtype=torch.float16)
    wrapper = torch.nn.Module()
    wrapper.image_encoder, wrapper.text_encoder = ImageEncoder(clip), TextEncoder(clip)
    names = openai_fp16_names(wrapper)
    half = {k for k, v in wrapper.state_dict().items() if v.dtype == torch.float16}
    assert names == half and "text_encoder.text_projection" in names and "image_encoder.visual.proj" in names


# ----- checkpoints -----

def _official_layout(model, ours, weights):
    """A checkpoint as the official PromptSRC saves it: the whole CustomCLIP after the GPA load, i.e. with
    GPA-folded frozen weights and the frozen tower copy ``prompt_learner.ZS_image_encoder`` (§11)."""
    out = {}
    for k, v in ours.items():
        if k.startswith("_gpa."):
            continue
        if k == "visual_prompts.visual_ctx":
            out["image_encoder.VPT"] = v
        elif k.startswith("visual_prompts.visual_deep."):
            out[f"image_encoder.transformer.resblocks.{int(k.rsplit('.', 1)[1]) + 1}.VPT_shallow"] = v
        elif k.startswith("text_deep."):
            out[f"text_encoder.transformer.resblocks.{int(k.rsplit('.', 1)[1]) + 1}.VPT_shallow"] = v
        else:
            out["prompt_learner." + k] = v
    for k, v in model.state_dict().items():
        if k.startswith("image_encoder.visual."):
            rest = k[len("image_encoder.visual."):]
            out["image_encoder." + rest] = gpa_fold(v, weights)
            out["prompt_learner.ZS_image_encoder." + rest] = gpa_fold(v, weights)
        elif k.startswith("text_encoder.") and "token_embedding" not in k:
            out[k] = gpa_fold(v, weights)
    out["logit_scale"] = gpa_fold(model.logit_scale.detach(), weights)
    return out


def test_official_whole_model_checkpoint_loads_with_its_frozen_weights(caltech_root, tiny_clip, tmp_path):
    out, ours_eval = str(tmp_path / "train"), str(tmp_path / "ours_eval")
    run_train(_args(caltech_root, tiny_clip, out, *GPA3, epochs=3))
    ours = load_checkpoint(os.path.join(out, "VLPromptLearner", "model.pth.tar-3"))["state_dict"]
    assert "_gpa.frozen_fold" in ours  # the fold's record, so an evaluation repeats it
    run_train(with_flags(_args(caltech_root, tiny_clip, ours_eval), "--eval-only", "--model-dir", out,
                         "--load-epoch", "3"))
    # the official layout: rebuild the pristine model to fold its frozen weights
    fresh_trainer = run_train(with_flags(_args(caltech_root, tiny_clip, str(tmp_path / "fresh")), "--no-train"))
    fresh = fresh_trainer.model
    official = str(tmp_path / "official")
    os.makedirs(os.path.join(official, "VLPromptLearner"))
    torch.save({"state_dict": _official_layout(fresh, ours, gaussian_epoch_weights(3, 2, 1)), "epoch": 3,
                "optimizer": None, "scheduler": None, "val_result": None},
               os.path.join(official, "VLPromptLearner", "model.pth.tar-3"))
    ev = str(tmp_path / "eval")
    run_train(with_flags(_args(caltech_root, tiny_clip, ev), "--eval-only", "--model-dir", official,
                         "--load-epoch", "3"))
    # its stored frozen tensors = the fold our evaluation recomputes; our post-training test also folded the
    # token buffers (as upstream's), which an evaluation rebuilds
    assert torch.equal(saved_logits(ev)["logits"], saved_logits(ours_eval)["logits"])
    assert torch.allclose(saved_logits(ev)["logits"], saved_logits(out)["logits"], atol=1e-5)
    # GPA_FROZEN_ROUNDING False: the prompts only, on the pristine backbone
    plain = str(tmp_path / "plain")
    run_train(with_flags(_args(caltech_root, tiny_clip, plain, "TRAINER.PROMPTSRC.GPA_FROZEN_ROUNDING", "False"),
                         "--eval-only", "--model-dir", official, "--load-epoch", "3"))
    fresh.prompt_learner.load_state_dict({k: v for k, v in ours.items() if not k.startswith(("_gpa", "token_"))},
                                         strict=False)
    with torch.no_grad():
        images = torch.cat([batch["img"] for batch in fresh_trainer.test_loader])
        assert torch.allclose(saved_logits(plain)["logits"], fresh(images), atol=1e-5)
    # MODEL.INIT_WEIGHTS takes the prompts of an official checkpoint
    init = run_train(with_flags(_args(caltech_root, tiny_clip, str(tmp_path / "init"), "MODEL.INIT_WEIGHTS",
                                      os.path.join(official, "VLPromptLearner", "model.pth.tar-3")), "--no-train"))
    for k, v in init.model.prompt_learner.named_parameters():
        assert torch.equal(v, ours[k]), k


def test_trainable_tensors_and_names_are_ivlps(caltech_root, tiny_clip, tmp_path):
    built = run_train(with_flags(_args(caltech_root, tiny_clip, str(tmp_path / "t")), "--no-train"))
    assert {n for n, p in built.model.named_parameters() if p.requires_grad} == {
        "prompt_learner.ctx", "prompt_learner.text_deep.0", "prompt_learner.visual_prompts.visual_ctx",
        "prompt_learner.visual_prompts.visual_deep.0"}
    pl = built.model.prompt_learner
    assert pl.ctx.shape == (4, built.model.text_encoder.width)  # widths from the backbone
    assert pl.visual_prompts.visual_ctx.shape == (4, built.model.image_encoder.width)


# ----- configs -----

@pytest.mark.parametrize("extra,fragment", [
    (["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "3"], "PROMPT_DEPTH_TEXT must be between 1 and 2"),
    (["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "0"], "PROMPT_DEPTH_TEXT must be between 1 and 2"),
    (["TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "9"], "PROMPT_DEPTH_VISION must be between 1 and 2"),
    (["TRAINER.PROMPTSRC.GPA_STD", "0"], "GPA_STD must be > 0"),
    (["TRAINER.PROMPTSRC.GPA_MEAN", "100000", "TRAINER.PROMPTSRC.GPA_STD", "1"], "zero Gaussian weight"),
    (["TRAINER.PROMPTSRC.PREC", "fp64"], "PREC must be one of"),
    (["TRAINER.PROMPTSRC.CTX_INIT", "a_photo", "TRAINER.PROMPTSRC.N_CTX_TEXT", "4"], "fewer tokens than N_CTX_TEXT"),
])
def test_bad_configs_fail_with_one_line(extra, fragment, caltech_root, tiny_clip, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_train(with_flags(_args(caltech_root, tiny_clip, str(tmp_path / "b"), *extra), "--no-train"))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "Warning" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_resnet_backbone_is_refused_for_visual_prompts(caltech_root, tiny_rn_clip, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_train(with_flags(_args(caltech_root, tiny_rn_clip, str(tmp_path / "r")), "--no-train"))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "Warning" not in line]
    assert len(lines) == 1 and "needs a ViT backbone" in lines[0] and "PROMPT_DEPTH_VISION 0" in lines[0], lines
    # text prompts only work on a ResNet CLIP
    built = run_train(with_flags(_args(caltech_root, tiny_rn_clip, str(tmp_path / "t"),
                                       "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "0"), "--no-train"))
    loss, _ = built.compute_loss(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    assert torch.isfinite(loss)


# values of the official yamls (muzairkhattak/PromptSRC bb95c77): epochs, depth, GPA mean / std
OFFICIAL = {"vit_b16_c2_ep20_batch4_4+4ctx": (20, 9, 15, 1),
            "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets": (20, 3, 6, 10),
            "vit_b16_c2_ep50_batch4_4+4ctx_few_shot": (50, 9, 30, 30),
            # ours: the GPA that the few-shot yaml's comment gives five datasets (docs/design/promptsrc.md Q9)
            "vit_b16_c2_ep50_batch4_4+4ctx_few_shot_gpa45": (50, 9, 45, 5)}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_yamls_and_command_lines_are_read_unchanged(name):
    import train

    cfg = train.setup_cfg(train.build_parser().parse_args(
        ["--trainer", "PromptSRC", "--config-file", os.path.join(REPO, "configs/trainers/PromptSRC", name + ".yaml"),
         "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"]))
    c = cfg.TRAINER.PROMPTSRC
    assert (cfg.OPTIM.MAX_EPOCH, c.PROMPT_DEPTH_VISION, c.PROMPT_DEPTH_TEXT, c.GPA_MEAN, c.GPA_STD) == (
        OFFICIAL[name][0], OFFICIAL[name][1], OFFICIAL[name][1], *OFFICIAL[name][2:])
    assert (c.N_CTX_VISION, c.N_CTX_TEXT, c.CTX_INIT, c.PREC, c.TEXT_LOSS_WEIGHT, c.IMAGE_LOSS_WEIGHT) == (
        4, 4, "a photo of a", "fp16", 25, 10)
    assert (cfg.OPTIM.LR, cfg.OPTIM.WARMUP_CONS_LR, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TEST.BATCH_SIZE,
            cfg.MODEL.BACKBONE.NAME) == (0.0025, 1e-5, 4, 100, "ViT-B/16")
    assert (c.FP16_PROMPT_ROUNDING, c.GPA_FROZEN_ROUNDING, c.TEMPLATE_NORM_EACH) == (True, True, False)
