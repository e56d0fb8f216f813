"""PLOT and PLOT++ (trainers/plot.py, docs/design/plot.md) on tiny CLIPs: the OT score against POT and against a
literal reading of the official routine, the degenerate one-prompt/one-feature case, prompt assembly (templates,
Q17), stage 2 and its checkpoint, official whole-model files, refusals, and the OT diagnostics of every OT
trainer."""
import os
import types

import ot
import pytest
import torch
import torch.nn as nn

from engine.checkpoint import load_checkpoint
from engine.utils.tools import UserError
from models import load_clip, tokenize
from models.prompted_clip import normalize
from models.sinkhorn import OTDiagnostics, plan_entropy_ratio
from tests.helpers import coop_args, make_caltech, make_tiny_clip, run_train
from trainers.plot import PLOTCLIP, PLOTPP_TEMPLATES, official_schedule, transport_scores

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OT = {"EPS": 0.1, "OT_MAX_ITER": 100, "OT_THRESHOLD": 0.01, "OT_STOP": "batch", "OT_LOG_DOMAIN": False,
      "OT_SYNC_EVERY": 8}


def ot_node(**changes):
    return types.SimpleNamespace(**{**OT, **changes})


def _features(b, m, n, k, d=8, seed=0, dtype=torch.float64):
    """Normalised local features (B, M, d) and prompt features (N, K, d) with cosines of both signs."""
    g = torch.Generator().manual_seed(seed)
    local = normalize(torch.randn(b, m, d, generator=g, dtype=dtype))
    text = normalize(torch.randn(n, k, d, generator=g, dtype=dtype))
    return local, text


def reference_scores(local, text, eps=0.1, max_iter=100, threshold=1e-2):
    """docs/design/plot.md §3.4/§4 literally: problems (b*K + k, M, N), r and c start at ones, row then column
    update, one stopping test for the whole call (mean |r - r_prev| over all problems), T = diag(r) K diag(c)."""
    b, m, _ = local.shape
    n, k, _ = text.shape
    sim = torch.stack([torch.stack([local[i] @ text[:, j].t() for j in range(k)]) for i in range(b)])
    sim = sim.reshape(b * k, m, n)
    kernel = torch.exp(-(1.0 - sim) / eps)
    u, v = torch.full((b * k, m), 1.0 / m, dtype=sim.dtype), torch.full((b * k, n), 1.0 / n, dtype=sim.dtype)
    r, c = torch.ones_like(u), torch.ones_like(v)
    for _ in range(max_iter):
        r0 = r
        r = u / (kernel @ c.unsqueeze(-1)).squeeze(-1)
        c = v / (kernel.transpose(1, 2) @ r.unsqueeze(-1)).squeeze(-1)
        if (r - r0).abs().mean().item() < threshold:
            break
    plan = r.unsqueeze(-1) * c.unsqueeze(-2) * kernel
    return (plan * sim).sum(dim=(1, 2)).view(b, k)


# ----------------------------------------------------------------------------------------------------
# The OT score
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 7, 4, 5), (2, 49, 2, 3), (1, 4, 1, 6)])
def test_converged_ot_score_equals_pot(shape):
    b, m, n, k = shape
    local, text = _features(b, m, n, k, seed=sum(shape))
    ours = transport_scores(local, text, ot_node(OT_MAX_ITER=20000, OT_THRESHOLD=0.0, OT_STOP="problem"))
    a, bb = torch.full((m,), 1.0 / m, dtype=torch.float64), torch.full((n,), 1.0 / n, dtype=torch.float64)
    for i in range(b):
        for j in range(k):
            sim = local[i] @ text[:, j].t()  # (M, N)
            plan = ot.sinkhorn(a, bb, 1.0 - sim, 0.1, numItermax=100000, stopThr=1e-14)
            assert ours[i, j].item() == pytest.approx((plan * sim).sum().item(), rel=1e-9, abs=1e-12)


def test_default_ot_score_is_the_official_batch_pooled_routine():
    local, text = _features(6, 9, 4, 5, seed=0)
    ours = transport_scores(local, text, ot_node())
    torch.testing.assert_close(ours, reference_scores(local, text), rtol=0, atol=1e-12)
    # the official stopping rule pools the batch (Q1): half the batch alone stops earlier (36 vs 46 iterations)
    alone = transport_scores(local[:3], text, ot_node())
    torch.testing.assert_close(alone, reference_scores(local[:3], text), rtol=0, atol=1e-12)
    assert (alone - ours[:3]).abs().max() > 1e-7
    # OT_STOP problem: every (image, class) stops on its own, so a score does not depend on the batch
    per_problem = transport_scores(local, text, ot_node(OT_STOP="problem"))
    torch.testing.assert_close(transport_scores(local[:3], text, ot_node(OT_STOP="problem")), per_problem[:3])


def test_score_gradient_flows_through_the_cosines_only():
    """The plan is a constant (§4): d score / d sim = T."""
    local, text = _features(2, 5, 3, 4, seed=5)
    local.requires_grad_(True)
    score = transport_scores(local, text, ot_node())
    (grad,) = torch.autograd.grad(score.sum(), local)
    with torch.no_grad():
        sim = torch.einsum("bmd,nkd->bkmn", local, text)
        from models.sinkhorn import sinkhorn
        plan = sinkhorn(1.0 - sim, 1 / 5, 1 / 3, 0.1, max_iter=100, threshold=0.01, stop_group_dims=2)
        expected = torch.einsum("bkmn,nkd->bmd", plan, text)
    torch.testing.assert_close(grad, expected)


def test_one_prompt_and_one_local_feature_give_plan_one_and_the_pair_similarity():
    local, text = _features(4, 1, 1, 3, seed=7)
    diagnostics = OTDiagnostics()
    score = transport_scores(local, text, ot_node(), diagnostics)
    torch.testing.assert_close(score, local[:, 0] @ text[0].t())
    assert diagnostics.summary()["prompt level"]["entropy_ratio"] == 1.0


def test_one_prompt_one_local_feature_model_logits(tiny_rn_clip, caltech_root, tmp_path):
    """tiny RN at 32 px: a 1x1 grid, so one local feature; N = 1: logits = scale * cos(local feature, prompt)."""
    trainer = run_train(["--no-train"] + coop_args(caltech_root, tiny_rn_clip, str(tmp_path / "o"), *PLOT_OPTS,
                                                   "TRAINER.PLOT.N", "1", trainer="PLOT", config="rn50.yaml"))
    model = trainer.model
    images = next(iter(trainer.test_loader))["img"][:5]
    with torch.no_grad():
        _, tokens = model.image_encoder(images, return_tokens=True)
        assert tokens.shape[1] == 2  # global + one grid cell
        text = normalize(model.text_features())
        expected = model.logit_scale.exp() * normalize(tokens[:, 1]) @ text.t()
        torch.testing.assert_close(model(images), expected)


# ----------------------------------------------------------------------------------------------------
# Diagnostics
# ----------------------------------------------------------------------------------------------------

def test_diagnostics_report_a_uniform_plan_as_entropy_ratio_one():
    diagnostics = OTDiagnostics()
    diagnostics.record("prompt level", torch.full((2, 3, 49, 4), 1 / 196), torch.tensor(7))
    peaked = torch.zeros(5, 4, 3)
    peaked[:, 0, 0] = 1.0
    diagnostics.record("token level", peaked, torch.tensor([2, 3, 4, 5, 6]))
    summary = diagnostics.summary()
    assert summary["prompt level"]["entropy_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert summary["prompt level"]["iterations"] == 7 and summary["prompt level"]["plans"] == 6
    assert summary["token level"]["entropy_ratio"] == pytest.approx(0.0, abs=1e-6)
    assert summary["token level"]["iterations"] == 4 and summary["token level"]["max_iterations"] == 6
    assert "entropy / uniform 1.0000" in diagnostics.report()[0]
    # masked entries do not count: a plan uniform on its 2 x 3 valid entries of a padded 2 x 5 problem
    plan = torch.zeros(1, 2, 5)
    plan[..., :3] = 1 / 6
    mask = torch.tensor([[True, True, True, False, False]])
    assert plan_entropy_ratio(plan, col_mask=mask).item() == pytest.approx(1.0, abs=1e-6)
    assert plan_entropy_ratio(plan).item() < 1


# ----------------------------------------------------------------------------------------------------
# PLOT end to end
# ----------------------------------------------------------------------------------------------------

PLOT_OPTS = ["TRAINER.PLOT.PREC", "fp32", "TRAINER.PLOT.N", "3", "TRAINER.PLOT.N_CTX", "4",
             "TRAINER.PLOT.EPOCH_OVERRIDE", "False", "TEST.SAVE_LOGITS", "True", "DATALOADER.TEST.BATCH_SIZE", "200"]


@pytest.fixture(scope="module")
def rn64_clip(tmp_path_factory):
    """A tiny RN CLIP at 64 px: a 2x2 attention-pool grid (4 local features)."""
    return make_tiny_clip(str(tmp_path_factory.mktemp("clip") / "rn64.pt"), vit=False, image_size=64)


def _plot_args(root, clip, out, *extra, size=64, epochs=1):
    return coop_args(root, clip, out, *PLOT_OPTS, "INPUT.SIZE", f"({size}, {size})", *extra, trainer="PLOT",
                     config="rn50.yaml", epochs=epochs)


def test_plot_trains_saves_and_evaluates_its_checkpoint(rn64_clip, caltech_root, tmp_path, capsys):
    out, ev = str(tmp_path / "train"), str(tmp_path / "eval")
    trainer = run_train(_plot_args(caltech_root, rn64_clip, out, "TEST.OT_DIAGNOSTICS", "True"))
    printed = capsys.readouterr().out
    assert "[test] OT diagnostics (prompt level): mean plan entropy / uniform" in printed
    assert 0.0 < trainer.ot_diagnostics_summary["prompt level"]["entropy_ratio"] <= 1.0 + 1e-6
    state = load_checkpoint(os.path.join(out, "prompt_learner", "model.pth.tar-1"))["state_dict"]
    assert state["ctx"].shape == (3, 4, 64)
    run_train(["--eval-only", "--model-dir", out, "--load-epoch", "1"] + _plot_args(caltech_root, rn64_clip, ev))
    torch.testing.assert_close(torch.load(os.path.join(ev, "logits_test.pt"))["logits"],
                               torch.load(os.path.join(out, "logits_test.pt"))["logits"])


def test_plot_model_equals_the_reference_on_four_local_features(rn64_clip, caltech_root, tmp_path):
    trainer = run_train(["--no-train"] + _plot_args(caltech_root, rn64_clip, str(tmp_path / "o")))
    model = trainer.model
    with torch.no_grad():
        model.prompt_learner.ctx.add_(0.3 * torch.randn(model.prompt_learner.ctx.shape,
                                                        generator=torch.Generator().manual_seed(0)))
    images = next(iter(trainer.test_loader))["img"]
    with torch.no_grad():
        _, tokens = model.image_encoder(images, return_tokens=True)
        assert tokens.shape[1] == 5
        text = model.text_features().view(3, 6, -1)
        expected = model.logit_scale.exp() * reference_scores(normalize(tokens[:, 1:]), normalize(text))
        torch.testing.assert_close(model(images), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("position", ["middle", "front"])
def test_plot_class_token_positions_build_every_row_with_its_prompts_context(position, rn64_clip, caltech_root,
                                                                             tmp_path):
    """Q7 (official: a crash): row n*K + k = CoOp's row for class k with ctx[n]."""
    trainer = run_train(["--no-train"] + _plot_args(caltech_root, rn64_clip, str(tmp_path / "o"),
                                                    "TRAINER.PLOT.CLASS_TOKEN_POSITION", position))
    pl = trainer.model.prompt_learner
    prompts = pl()
    assert prompts.shape[0] == 3 * 6
    for n in range(3):
        for k, name_len in enumerate(pl.name_lens):
            row = prompts[n * 6 + k]
            start = 1 + name_len if position == "front" else 1
            width = 4 if position == "front" else 2
            torch.testing.assert_close(row[start:start + width], pl.ctx[n, :width])
            torch.testing.assert_close(row[0], pl.token_prefix[k, 0])


def test_plot_exact_speedups_equal_the_upstream_path(rn64_clip, caltech_root, tmp_path):
    """Shared prefix, truncation and the text cache change nothing (within fp32 rounding)."""
    trainer = run_train(["--no-train"] + _plot_args(caltech_root, rn64_clip, str(tmp_path / "o")))
    images = next(iter(trainer.test_loader))["img"]
    model = trainer.model
    with torch.no_grad():
        fast = model(images)
        model.text_encoder.share_prefix = model.text_encoder.truncate = False
        slow = model(images)
        model.cache_text_features()
        cached = model(images)
        model.clear_text_cache()
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-4)
    torch.testing.assert_close(cached, slow)


def test_plot_refuses_a_vit_unless_asked_and_then_uses_its_patch_tokens(tiny_clip, caltech_root, tmp_path, capsys):
    args = coop_args(caltech_root, tiny_clip, str(tmp_path / "o"), *PLOT_OPTS, trainer="PLOT", config="rn50.yaml")
    with pytest.raises(SystemExit) as e:
        run_train(["--no-train"] + args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "TRAINER.PLOT.VIT_LOCAL_FEATURES True" in err
    trainer = run_train(["--no-train"] + args + ["TRAINER.PLOT.VIT_LOCAL_FEATURES", "True"])
    images = next(iter(trainer.test_loader))["img"][:3]
    with torch.no_grad():
        pooled, tokens = trainer.model.image_encoder(images, return_tokens=True)
        local, glob = trainer.model.image_side(images)
    torch.testing.assert_close(local, tokens[:, 1:])
    torch.testing.assert_close(glob, pooled)


def test_resnet_without_attention_pool_is_refused_in_one_line(tiny_rn_clip):
    clip_model = load_clip("custom", tiny_rn_clip, "fp32")
    clip_model.visual.attnpool = nn.Identity()
    cfg = types.SimpleNamespace(VIT_LOCAL_FEATURES=False, **OT)
    with pytest.raises(UserError) as e:
        PLOTCLIP(cfg, ["a", "b"], False, clip_model)
    message = str(e.value)
    assert "\n" not in message and "no CLIP attention pool" in message and "RN50" in message


def test_plot_refusals(rn64_clip, caltech_root, tmp_path, capsys):
    for opts, text in ((["TRAINER.PLOT.CSC", "True"], "CSC True is not supported"),
                       (["TRAINER.PLOT.OT_STOP", "group"], "OT_STOP must be one of"),
                       (["TRAINER.PLOT.GLOBAL_LOGITS", "sometimes"], "GLOBAL_LOGITS must be one of")):
        with pytest.raises(SystemExit):
            run_train(["--no-train"] + _plot_args(caltech_root, rn64_clip, str(tmp_path / "o"), *opts))
        assert text in capsys.readouterr().err


def test_plot_global_term_follows_the_official_imagenet_rule(rn64_clip, caltech_root, tmp_path):
    trainer = run_train(["--no-train"] + _plot_args(caltech_root, rn64_clip, str(tmp_path / "a")))
    assert not trainer.model.use_global  # Caltech101: OT logits only (Q9)
    images = next(iter(trainer.test_loader))["img"][:4]
    with torch.no_grad():
        base = trainer.model(images)
        trainer.model.use_global = True
        both = trainer.model(images)
        pooled, tokens = trainer.model.image_encoder(images, return_tokens=True)
        text, text_global = trainer.model.text_side()
    torch.testing.assert_close(both - base, trainer.model.logit_scale.exp() * normalize(pooled) @ text_global.t(),
                               rtol=0, atol=1e-4)
    always = run_train(["--no-train"] + _plot_args(caltech_root, rn64_clip, str(tmp_path / "b"),
                                                   "TRAINER.PLOT.GLOBAL_LOGITS", "always"))
    assert always.model.use_global


def test_official_epoch_rule_is_resolved_with_a_switch(capsys):
    import train

    def resolved(*opts, dataset="caltech101"):
        return train.resolve_config(["--trainer", "PLOT", "--config-file", "configs/trainers/PLOT/rn50.yaml",
                                     "--dataset-config-file", f"configs/datasets/{dataset}.yaml", *opts])

    assert [official_schedule(k, "Caltech101") for k in (1, 2, 4, 8, 16)] == [50, 100, 100, 200, 200]
    assert resolved("DATASET.NUM_SHOTS", "1").OPTIM.MAX_EPOCH == 50
    assert "OPTIM.MAX_EPOCH 50 -> 200" in (resolved("DATASET.NUM_SHOTS", "16", "OPTIM.MAX_EPOCH", "50") and
                                           capsys.readouterr().out)
    assert resolved("DATASET.NUM_SHOTS", "16", dataset="imagenet").OPTIM.MAX_EPOCH == 50
    flowers = resolved("DATASET.NUM_SHOTS", "16", dataset="oxford_flowers")
    assert flowers.DATALOADER.TRAIN_X.BATCH_SIZE == 32 and flowers.OPTIM.MAX_EPOCH == 200
    kept = resolved("DATASET.NUM_SHOTS", "16", "OPTIM.MAX_EPOCH", "3", "TRAINER.PLOT.EPOCH_OVERRIDE", "False",
                    dataset="oxford_flowers")
    assert kept.OPTIM.MAX_EPOCH == 3 and kept.DATALOADER.TRAIN_X.BATCH_SIZE == 128


# ----------------------------------------------------------------------------------------------------
# PLOT++
# ----------------------------------------------------------------------------------------------------

PP_OPTS = ["TRAINER.PLOTPP.PREC", "fp32", "TRAINER.PLOTPP.M", "3", "TRAINER.PLOTPP.N", "4",
           "TRAINER.PLOTPP.EPOCH_OVERRIDE", "False", "TEST.SAVE_LOGITS", "True"]


def _pp_args(root, clip, out, *extra, epochs=1):
    return coop_args(root, clip, out, *PP_OPTS, *extra, trainer="PLOTPP", config="vit.yaml", epochs=epochs)


def test_plotpp_two_stages(tiny_clip, caltech_root, tmp_path, capsys):
    s1, s2 = str(tmp_path / "stage1"), str(tmp_path / "stage2")
    first = run_train(_pp_args(caltech_root, tiny_clip, s1, "TRAINER.PLOTPP.MODEL_UPD", "vision",
                               "TRAINER.PLOTPP.TRADE_OFF", "True"))
    assert {n for n, p in first.model.named_parameters() if p.requires_grad} == {"prompt_learner.ctx_vision"}
    assert first.model.use_global
    s1_state = load_checkpoint(os.path.join(s1, "prompt_learner", "model.pth.tar-1"))["state_dict"]
    # stage 2 finds the stage-1 checkpoint from the run folder (ours) or takes the file (official)
    for i, pretrain in enumerate((s1, os.path.join(s1, "prompt_learner", "model.pth.tar-1"))):
        second = run_train(["--no-train"] + _pp_args(caltech_root, tiny_clip, s2 + str(i), "TRAINER.PLOTPP.MODEL_UPD",
                                                     "joint", "TRAINER.PLOTPP.PRETRAIN_DIR", pretrain))
        pl = second.model.prompt_learner
        torch.testing.assert_close(pl.ctx_vision.detach(), s1_state["ctx_vision"])
        torch.testing.assert_close(pl.ctx.detach(), s1_state["ctx"])
        assert pl.ctx.requires_grad and pl.ctx_vision.requires_grad and not second.model.use_global


def test_plotpp_stage2_refuses_to_start_without_a_stage1_checkpoint(tiny_clip, caltech_root, tmp_path, capsys):
    missing = str(tmp_path / "no_stage1" / "seed1")
    for pretrain, expected in ((missing, os.path.join(missing, "prompt_learner", "model.pth.tar-<last epoch>")),
                               (os.path.join(missing, "model.pth.tar-50"), os.path.join(missing, "model.pth.tar-50"))):
        with pytest.raises(SystemExit) as e:
            run_train(_pp_args(caltech_root, tiny_clip, str(tmp_path / "o"), "TRAINER.PLOTPP.MODEL_UPD", "joint",
                               "TRAINER.PLOTPP.PRETRAIN_DIR", pretrain))
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no stage-1 checkpoint" in err and expected in err
    assert not os.path.exists(str(tmp_path / "o" / "prompt_learner"))  # refused before any training


def test_plotpp_loads_official_whole_model_checkpoints(tiny_clip, caltech_root, tmp_path):
    """§11: the official file is the whole CustomCLIP (prompt_learner.*, image_encoder.*, text_encoder.[module.]*)."""
    out = str(tmp_path / "o")
    trainer = run_train(["--no-train"] + _pp_args(caltech_root, tiny_clip, out, "TRAINER.PLOTPP.MODEL_UPD", "joint"))
    pl = trainer.model.prompt_learner
    g = torch.Generator().manual_seed(1)
    ctx, ctx_vision = torch.randn(pl.ctx.shape, generator=g), torch.randn(pl.ctx_vision.shape, generator=g)
    state = {"prompt_learner.ctx": ctx, "prompt_learner.ctx_vision": ctx_vision,
             "prompt_learner.token_prefix": torch.zeros(4 * 6, 1, 64),
             "prompt_learner.token_suffix": torch.zeros(4 * 6, 72, 64),
             "logit_scale": torch.tensor(1.0), "image_encoder.proj": torch.zeros(64, 32),
             "text_encoder.module.text_projection": torch.zeros(64, 32)}
    official = str(tmp_path / "official")
    os.makedirs(os.path.join(official, "prompt_learner"))
    torch.save({"state_dict": state, "epoch": 50}, os.path.join(official, "prompt_learner", "model.pth.tar-50"))
    ev = run_train(["--eval-only", "--model-dir", official, "--load-epoch", "50"] + _pp_args(
        caltech_root, tiny_clip, str(tmp_path / "ev"), "TRAINER.PLOTPP.MODEL_UPD", "joint"))
    torch.testing.assert_close(ev.model.prompt_learner.ctx.detach(), ctx)
    torch.testing.assert_close(ev.model.prompt_learner.ctx_vision.detach(), ctx_vision)
    assert ev.model.prompt_learner.token_suffix.abs().sum() > 0  # rebuilt for the classes, not loaded
    # MODEL.INIT_WEIGHTS takes the same file (official PLOT++ ignores the key; ours loads the prompts)
    init = run_train(["--no-train"] + _pp_args(caltech_root, tiny_clip, str(tmp_path / "init"), "MODEL.INIT_WEIGHTS",
                                               os.path.join(official, "prompt_learner", "model.pth.tar-50")))
    torch.testing.assert_close(init.model.prompt_learner.ctx_vision.detach(), ctx_vision)


def test_plotpp_templates_and_context_lengths(tiny_clip, caltech_root, tmp_path):
    """§5.2 / Q17: L = word count of template 0 for every template; PER_TEMPLATE_CTX gives each its own."""
    trainer = run_train(["--no-train"] + _pp_args(caltech_root, tiny_clip, str(tmp_path / "o")))
    model = trainer.model
    pl, enc = model.prompt_learner, model.text_encoder
    names = trainer.dm.dataset.classnames
    templates = PLOTPP_TEMPLATES["Caltech101"]
    prompts = pl().view(4, len(names), 77, -1)
    for n, t in enumerate(templates):
        emb = enc.embed(tokenize(f"{t} {names[0].replace('_', ' ')}."))[0]
        torch.testing.assert_close(pl.ctx[n].detach(), enc.embed(tokenize(t))[0, 1:5])
        torch.testing.assert_close(prompts[n, 0], emb)  # at init the row is the sentence itself (all 4 words)

    # ImageNet's "this is a" has 3 tokens: the 4th context vector is the end token's embedding and the class name
    # loses its first token to it (official); PER_TEMPLATE_CTX keeps the sentence intact
    class Node(dict):
        __getattr__ = dict.__getitem__

    from trainers.plot import PLOTPPPromptLearner

    imagenet = PLOTPP_TEMPLATES["ImageNet"]
    for per_template in (False, True):
        cfg = Node(N=4, M=2, N_CTX=4, N_CTX_V=2, PER_TEMPLATE_CTX=per_template)
        learner = PLOTPPPromptLearner(cfg, ["goldfish", "great white shark"], enc, 64, imagenet)
        rows = learner().view(4, 2, 77, -1)
        sentence = enc.embed(tokenize("this is a great white shark."))[0]
        eot = enc.embed(tokenize("this is a"))[0, 4]
        if per_template:
            assert learner.lengths == [4, 4, 3, 4]
            torch.testing.assert_close(rows[2, 1], sentence)
        else:
            assert learner.lengths == [4, 4, 4, 4]
            torch.testing.assert_close(learner.ctx[2, 3].detach(), eot)
            torch.testing.assert_close(rows[2, 1, :4], sentence[:4])
            torch.testing.assert_close(rows[2, 1, 4], eot)  # "great" replaced by the learned (EOT-initialised) vector
            torch.testing.assert_close(rows[2, 1, 5:], sentence[5:])
        assert learner.eot_indices.view(4, 2)[2, 1] == tokenize("this is a great white shark.").argmax()


def test_plotpp_exact_speedups_and_m_image_passes(tiny_clip, caltech_root, tmp_path):
    trainer = run_train(["--no-train"] + _pp_args(caltech_root, tiny_clip, str(tmp_path / "o")))
    model = trainer.model
    images = next(iter(trainer.test_loader))["img"][:4]
    with torch.no_grad():
        feats, mean = model.image_side(images)
        for m in range(3):  # pass m = the image with visual prompt set m appended
            one = model.image_encoder(images, extra_tokens=model.prompt_learner.ctx_vision[m])
            torch.testing.assert_close(feats[:, m], one, rtol=0, atol=1e-5)
        torch.testing.assert_close(mean, feats.mean(1))
        fast = model(images)
        model.text_encoder.share_prefix = model.text_encoder.truncate = False
        torch.testing.assert_close(model(images), fast, rtol=0, atol=1e-4)


def test_plotpp_refusals(tiny_clip, tiny_rn_clip, caltech_root, tmp_path, capsys):
    cases = ((tiny_clip, ["TRAINER.PLOTPP.N", "5"], "CTX_INIT True has 4 templates"),
             (tiny_clip, ["TRAINER.PLOTPP.MODEL_UPD", "visual"], "MODEL_UPD must be 'vision'"),
             (tiny_rn_clip, [], "PLOT++ needs a ViT backbone"))
    for clip, opts, text in cases:
        with pytest.raises(SystemExit):
            run_train(["--no-train"] + _pp_args(caltech_root, clip, str(tmp_path / "o"), *opts))
        assert text in capsys.readouterr().err
    # a dataset outside the template table: refused (official KeyError), TEMPLATE_FALLBACK or CTX_INIT False work
    from trainers.plot import plotpp_templates

    with pytest.raises(UserError, match="TEMPLATE_FALLBACK"):
        plotpp_templates("ImageNetSketch")
    assert plotpp_templates("ImageNetSketch", "ImageNet") == PLOTPP_TEMPLATES["ImageNet"]
    random_ctx = run_train(["--no-train"] + _pp_args(caltech_root, tiny_clip, str(tmp_path / "r"),
                                                     "TRAINER.PLOTPP.CTX_INIT", "False", "TRAINER.PLOTPP.N", "6"))
    assert random_ctx.model.prompt_learner.ctx.shape == (6, 4, 64)


# ----------------------------------------------------------------------------------------------------
# ALIGN: the same diagnostics, both OT levels (numerics unchanged: tests/test_align.py)
# ----------------------------------------------------------------------------------------------------

def test_align_reports_both_ot_levels(tiny_clip, caltech_root, tmp_path, capsys):
    args = coop_args(caltech_root, tiny_clip, str(tmp_path / "o"), "TRAINER.MMP.PREC", "fp32",
                     "TRAINER.MMP.FEWSHOT_EPOCH_OVERRIDE", "False", "TRAINER.MMP.TEXT_PROMPT_DEPTH", "2",
                     "TEST.OT_DIAGNOSTICS", "True", trainer="ALIGN",
                     config="vit_b16_c2_ep5_batch4_2ctx.yaml")
    trainer = run_train(["--eval-only", "--untrained"] + args)
    out = capsys.readouterr().out
    assert "OT diagnostics (prompt level)" in out and "OT diagnostics (token level)" in out
    summary = trainer.ot_diagnostics_summary
    assert summary["token level"]["plans"] == 18 * 6 * 16  # images x classes x (M x N)
    assert 0 < summary["token level"]["entropy_ratio"] <= 1 + 1e-6 and summary["prompt level"]["iterations"] >= 1
    assert trainer.model.ot_diagnostics is None  # only during an evaluation
