"""ProGrad (docs/design/prograd.md) on the tiny CLIP: the update is the plain cross-entropy update when the CE
and KL gradients agree and the projection when they conflict (both cases constructed), the zero-padded phrase
init, the fp32 teacher, frozen encoders, official checkpoints and one-line config errors."""
import os
import pytest
import torch
import torch.nn.functional as F

from models.clip import tokenize
from tests.helpers import assert_unchanged, coop_args, frozen_state, run_train, saved_logits, with_flags
from trainers.prograd import CTX_INIT_DATASET, distillation_loss, project_conflicting

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DETERMINISTIC = ["INPUT.TRANSFORMS", "['normalize']", "OPTIM.NAME", "sgd", "OPTIM.WARMUP_EPOCH", "0",
                 "DATALOADER.TRAIN_X.BATCH_SIZE", "24", "TRAINER.COOP.PREC", "fp32", "TEST.SAVE_LOGITS", "True"]


def _args(root, clip, out, *extra, epochs=1):
    return coop_args(root, clip, out, *DETERMINISTIC, *extra, trainer="ProGrad", epochs=epochs,
                     config="rn50_ep100.yaml")


def _built(root, clip, out, *extra):
    return run_train(with_flags(_args(root, clip, out, *extra), "--no-train"))


def _step(trainer, batch):
    """One engine training step (forward_backward: compute_loss, backward, adjust_gradients, optimizer step)."""
    trainer.set_model_mode("train")
    trainer.epoch, trainer.batch_idx, trainer.num_batches = 0, 0, 10 ** 6
    trainer.forward_backward(batch)


def _teacher_towards(trainer, batch, agree):
    """Replace the teacher's prediction on this batch by p_t = (1 - m) t + m q (q: a fixed random distribution),
    t built from the student's prediction p = softmax(logits / T): agree, t = (p + onehot(label)) / 2, so that the
    KL gradient on the logits, T (p - p_t), is half of T (p - onehot) plus some of q's; conflict,
    t = (1 + c) p - c onehot (a distribution for c <= p_y / (1 - p_y), per image), so that it is -c T (p - onehot)
    plus a little of q's: opposed to the CE gradient (p_1 - onehot) image by image (for T > 1, p is smoother than
    p_1, whose p_y may vanish)."""
    image, label, temp = batch["img"], batch["label"], trainer.cfg.LOSS.T
    with torch.no_grad():
        p = F.softmax(trainer.model.student_logits(image)[0] / temp, dim=-1)
    onehot = F.one_hot(label, trainer.num_classes).float()
    if agree:
        target = 0.5 * p + 0.5 * onehot
    else:
        p_y = (p * onehot).sum(1, keepdim=True)
        c = 0.9 * p_y / (1 - p_y)
        target = (1 + c) * p - c * onehot
    q = F.softmax(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)), dim=-1)
    m = 0.3 if agree else 0.02
    teacher = temp * ((1 - m) * target + m * q).log()  # softmax(teacher / T) = p_t
    trainer.model.teacher_logits = lambda image, image_features=None: teacher


def _gradients(trainer, batch):
    """CE gradient a and KL gradient b of the context, computed here independently of the trainer's step."""
    model, ctx = trainer.model, trainer.model.prompt_learner.ctx
    image, label = batch["img"], batch["label"]
    logits, features = model.student_logits(image)
    a, = torch.autograd.grad(F.cross_entropy(logits, label), ctx, retain_graph=True)
    t = trainer.cfg.LOSS.T
    teacher = F.softmax(model.teacher_logits(image) / t, dim=-1)
    b, = torch.autograd.grad((-(teacher * F.log_softmax(logits / t, dim=-1)).sum(1) * t * t).mean(), ctx)
    return a, b


def _sgd_step(trainer, start, grad):
    """The context after one step of the trainer's optimizer settings with gradient ``grad`` from ``start``."""
    p = torch.nn.Parameter(start.clone())
    o = trainer.cfg.OPTIM
    opt = torch.optim.SGD([p], lr=o.LR, momentum=o.MOMENTUM, weight_decay=o.WEIGHT_DECAY,
                          dampening=o.SGD_DAMPNING, nesterov=o.SGD_NESTEROV)
    p.grad = grad.clone()
    opt.step()
    return p.detach()


@pytest.fixture()
def batch_of(caltech_root, tiny_clip, tmp_path):
    def build(*extra):
        t = _built(caltech_root, tiny_clip, str(tmp_path / f"r{len(os.listdir(tmp_path))}"), *extra)
        return t, next(iter(t.train_loader_x))
    return build


def test_agreeing_gradients_give_exactly_the_plain_cross_entropy_update(batch_of):
    trainer, batch = batch_of()
    _teacher_towards(trainer, batch, agree=True)
    ctx = trainer.model.prompt_learner.ctx
    start = ctx.detach().clone()
    a, b = _gradients(trainer, batch)
    cos = torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm())
    assert 0 < cos < 0.99  # the case this test is about: agreeing, not parallel
    _step(trainer, batch)
    assert torch.equal(ctx.grad, a) and trainer._projected == 0
    # the same step with LAMBDA 0 (plain CE training, no KL gradient taken) lands on the same context
    plain, batch0 = batch_of("LOSS.LAMBDA", "0.0")
    assert torch.equal(plain.model.prompt_learner.ctx, start)
    _step(plain, batch0)
    assert torch.equal(plain.model.prompt_learner.ctx, ctx)
    assert torch.allclose(ctx.detach(), _sgd_step(trainer, start, a), atol=0, rtol=0)


@pytest.mark.parametrize("lam", ["1.0", "0.8"])
def test_conflicting_gradients_are_projected(batch_of, lam):
    trainer, batch = batch_of("LOSS.LAMBDA", lam, "LOSS.T", "10.0")
    _teacher_towards(trainer, batch, agree=False)
    ctx = trainer.model.prompt_learner.ctx
    start = ctx.detach().clone()
    a, b = _gradients(trainer, batch)
    b_unit = b / b.norm()
    cos = torch.dot(a.flatten(), b_unit.flatten()) / a.norm()
    assert -0.99 < cos < 0  # the case this test is about: conflicting, not anti-parallel
    expected = a - float(lam) * torch.dot(a.flatten(), b_unit.flatten()) * b_unit
    _step(trainer, batch)
    assert trainer._projected == 1
    assert torch.allclose(ctx.grad, expected, rtol=1e-5, atol=1e-8)
    assert not torch.allclose(ctx.grad, a, rtol=1e-3, atol=0)
    remaining = torch.dot(ctx.grad.flatten(), b_unit.flatten())  # the component along the KL gradient
    assert abs(remaining) < 1e-5 * a.norm() if lam == "1.0" else remaining < 0
    assert torch.allclose(ctx.detach(), _sgd_step(trainer, start, expected), rtol=1e-5, atol=1e-8)


def test_projection_rule_edge_cases_and_scale_invariance():
    a, b = torch.tensor([[1.0, 2.0], [0.0, -1.0]]), torch.tensor([[-1.0, 0.0], [1.0, 0.5]])
    g, projected = project_conflicting(a, b, 1.0)
    assert projected and abs(float((g * b).sum())) < 1e-6
    for s in (1024.0, 65536.0):  # loss scaling multiplies a and b alike: the result scales with it
        gs, _ = project_conflicting(s * a, s * b, 1.0)
        assert torch.allclose(gs, s * g)
    assert project_conflicting(a, -b, 1.0) == (a, False)           # cos > 0: a unchanged
    assert project_conflicting(a, torch.zeros_like(b), 1.0)[1] is False  # b = 0: NaN test, a unchanged (Q6)
    orthogonal = torch.tensor([[2.0, -1.0], [0.0, 0.0]])
    assert project_conflicting(a, orthogonal, 1.0) == (a, False)   # cos = 0 is not a conflict (strict < 0)


def test_distillation_loss_is_t2_soft_cross_entropy():
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    for temp in (1.0, 5.0):
        p = F.softmax(t / temp, -1)
        kl = F.kl_div(F.log_softmax(s / temp, -1), p, reduction="batchmean") * temp ** 2
        entropy = -(p * p.log()).sum(1).mean() * temp ** 2
        assert torch.allclose(distillation_loss(s, t, temp), kl + entropy, atol=1e-5)


def test_training_moves_only_the_context_and_keeps_clip(caltech_root, tiny_clip, tmp_path):
    trainer = _built(caltech_root, tiny_clip, str(tmp_path / "r"), "OPTIM.LR", "0.05")
    model = trainer.model
    frozen = frozen_state(model)
    teacher = model.teacher_text_features.clone()
    batch = next(iter(trainer.train_loader_x))
    for _ in range(3):
        _step(trainer, batch)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"prompt_learner.ctx"}
    assert {n for n, p in model.named_parameters() if p.grad is not None} == {"prompt_learner.ctx"}
    assert_unchanged(model, frozen)
    assert torch.equal(model.teacher_text_features, teacher)
    assert trainer.get_model_names() == ["prompt_learner"]


def test_zero_padded_phrase_init_as_upstream(caltech_root, tiny_clip, tmp_path):
    """CTX_INIT True: N_CTX kept, zeros in front, the phrase's first w tokens (w = words) in the last w slots;
    a phrase with more tokens than words leaves its last token in the fixed text (prograd.md §2.4)."""
    trainer = _built(caltech_root, tiny_clip, str(tmp_path / "a"))
    pl, enc = trainer.model.prompt_learner, trainer.model.text_encoder
    assert trainer.cfg.TRAINER.COOP.CTX_INIT == CTX_INIT_DATASET and pl.ctx.shape == (16, enc.width)
    phrase = enc.embed(tokenize("a photo of a"))[0, 1:5]
    assert torch.equal(pl.ctx[:12], torch.zeros(12, enc.width)) and torch.equal(pl.ctx[12:], phrase)

    pets = "a type of pet, a photo of a"  # OxfordPets' phrase: 8 words, 9 tokens (the comma)
    trainer = _built(caltech_root, tiny_clip, str(tmp_path / "b"), "TRAINER.PROGRAD.CTX_INIT_PHRASE", pets)
    pl = trainer.model.prompt_learner
    tokens = enc.embed(tokenize(pets))[0]
    assert torch.equal(pl.ctx[:8], torch.zeros(8, enc.width)) and torch.equal(pl.ctx[8:], tokens[1:9])
    assert torch.equal(pl.token_suffix[:, 0], tokens[9].expand(pl.n_cls, -1))  # the last "a" stays fixed text
    # the initial prompt spells the placeholder sentence's embedding exactly (zeros where the X's are)
    placeholder = enc.embed(tokenize(["X " * 8 + pets + " accordion."]))[0]
    assert torch.equal(pl()[0, 9:], placeholder[9:pl().shape[1]])

    random = _built(caltech_root, tiny_clip, str(tmp_path / "c"), "TRAINER.COOP.CTX_INIT", "False")
    assert random.model.prompt_learner.ctx.shape == (16, enc.width) and random.model.prompt_learner.ctx.std() > 0.01


def test_teacher_is_zero_shot_clip_with_prograd_templates(caltech_root, tiny_clip, tmp_path):
    from models.prompted_clip import template_text_features
    from trainers.prograd import PROGRAD_TEMPLATES, template_for

    trainer = _built(caltech_root, tiny_clip, str(tmp_path / "r"))
    model = trainer.model
    images = next(iter(trainer.test_loader))["img"]
    features = template_text_features(model.text_encoder, trainer.dm.dataset.classnames, ["a photo of a {}."])
    with torch.no_grad():
        zero_shot = model.logits(F.normalize(model.image_encoder(images), dim=-1), features)
    assert torch.allclose(model.teacher_logits(images), zero_shot, atol=1e-5)
    assert model.teacher_image_encoder is None  # fp32: one CLIP, the student's image tower
    assert template_for("DescribableTextures") == PROGRAD_TEMPLATES["DescribableTextures"] == "a texture of {}."
    assert template_for("MyDataset") == "a photo of a {}."


def test_fp16_storage_keeps_an_fp32_teacher(tiny_clip):
    """Under PREC fp16 (GPU) the teacher runs on an fp32 copy of the fp16-rounded weights: upstream's fp32
    teacher. Checked on CPU (half kernels) against the same weights loaded in fp32."""
    from open_clip.model import build_model_from_openai_state_dict

    from engine.config import get_cfg_default
    from trainers.coop import CoOp
    from trainers.prograd import ProGradCLIP

    sd = {k: (v.half().float() if v.is_floating_point() else v) for k, v in torch.load(tiny_clip).items()}
    cfg = get_cfg_default()
    CoOp.extend_cfg(cfg)
    node = cfg.TRAINER.COOP
    names = ["accordion", "ant", "bass"]
    models = {}
    for prec in ("fp16", "fp32"):
        clip = build_model_from_openai_state_dict(dict(sd), cast_dtype=torch.float16).eval()
        if prec == "fp32":
            clip.float()
        for p in clip.parameters():
            p.requires_grad_(False)
        models[prec] = ProGradCLIP(node, names, "a photo of a {}.", "a photo of a", False, clip)
    m16, m32 = models["fp16"], models["fp32"]
    assert m16.prompt_learner.ctx.dtype == torch.float16 and m16.teacher_image_encoder.dtype == torch.float32
    assert torch.equal(m16.teacher_text_features, m32.teacher_text_features)
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(m16.teacher_logits(images), m32.teacher_logits(images))
    assert m16.teacher_logits(images, m16.image_features(images)).dtype == torch.float32  # the shared switch


def test_official_checkpoint_loads_and_init_weights(caltech_root, tiny_clip, tmp_path):
    """Upstream's file: prompt_learner/model.pth.tar-N with state_dict (ctx, token_prefix, token_suffix), epoch,
    optimizer, scheduler and no val_result (prograd.md §9)."""
    out = str(tmp_path / "train")
    run_train(_args(caltech_root, tiny_clip, out))
    ours = torch.load(os.path.join(out, "prompt_learner", "model.pth.tar-1"), weights_only=False)
    assert set(ours["state_dict"]) == {"ctx", "token_prefix", "token_suffix"}
    official = tmp_path / "official" / "prompt_learner"
    official.mkdir(parents=True)
    ctx = ours["state_dict"]["ctx"] + 0.01
    state = {"ctx": ctx, "token_prefix": torch.zeros_like(ours["state_dict"]["token_prefix"]),
             "token_suffix": torch.zeros_like(ours["state_dict"]["token_suffix"])}
    optim = torch.optim.SGD([torch.nn.Parameter(ctx.clone())], lr=0.002, momentum=0.9)
    torch.save({"state_dict": state, "epoch": 1, "optimizer": optim.state_dict(), "scheduler": None},
               str(official / "model.pth.tar-1"))

    ev = str(tmp_path / "eval")
    evaluated = run_train(with_flags(_args(caltech_root, tiny_clip, ev), "--eval-only", "--model-dir",
                                     str(tmp_path / "official"), "--load-epoch", "1"))
    pl = evaluated.model.prompt_learner
    assert torch.equal(pl.ctx, ctx) and not torch.equal(pl.token_prefix, state["token_prefix"])  # buffers rebuilt
    assert not torch.equal(saved_logits(ev)["logits"], saved_logits(out)["logits"])

    init = _built(caltech_root, tiny_clip, str(tmp_path / "init"), "MODEL.INIT_WEIGHTS",
                  str(official / "model.pth.tar-1"))
    assert torch.equal(init.model.prompt_learner.ctx, ctx)


def test_eval_only_and_resume_reproduce_the_run(caltech_root, tiny_clip, tmp_path, monkeypatch):
    from tests.helpers import kill_then_resume

    out = str(tmp_path / "train")
    run_train(_args(caltech_root, tiny_clip, out, "OPTIM.LR", "0.05", epochs=2))
    ev = str(tmp_path / "eval")
    run_train(with_flags(_args(caltech_root, tiny_clip, ev), "--eval-only", "--model-dir", out, "--load-epoch", "2"))
    assert torch.equal(saved_logits(ev)["logits"], saved_logits(out)["logits"])
    killed = str(tmp_path / "killed")
    kill_then_resume(_args(caltech_root, tiny_clip, killed, "OPTIM.LR", "0.05", epochs=2), monkeypatch)
    assert torch.equal(saved_logits(killed)["logits"], saved_logits(out)["logits"])


def test_official_yaml_ctx_init_flag_is_read():
    import train

    cfg = train.setup_cfg(train.build_parser().parse_args(
        ["--trainer", "ProGrad", "--config-file", os.path.join(REPO, "configs/trainers/ProGrad/rn50.yaml")]))
    assert cfg.TRAINER.COOP.CTX_INIT == CTX_INIT_DATASET and cfg.LOSS.NAME == "prograd" and cfg.LOSS.LAMBDA == 1.0
    assert cfg.OPTIM.MAX_EPOCH == 200 and cfg.MODEL.BACKBONE.NAME == "RN50"


@pytest.mark.parametrize("opts,message", [
    (["--config-file", "configs/trainers/CoOp/rn50.yaml"], "ProGrad needs LOSS.NAME prograd"),
    (["TRAINER.COOP.CTX_INIT", "a photo of a"], "TRAINER.COOP.CTX_INIT is a flag for ProGrad"),
    (["TRAINER.COOP.N_CTX", "2"], "TRAINER.COOP.N_CTX is 2 but the init phrase 'a photo of a' has 4 words"),
    (["LOSS.LAMBDA", "1.5"], "LOSS.LAMBDA (the share of the conflicting component removed) must lie in [0, 1]"),
    (["TRAINER.COOP.CSC", "True"], "TRAINER.COOP.CSC True cannot be combined with CTX_INIT True"),
])
def test_bad_config_gives_one_line(caltech_root, tiny_clip, tmp_path, capsys, opts, message):
    args = _args(caltech_root, tiny_clip, str(tmp_path / "r"))
    if opts[0].startswith("--"):
        args[args.index("--config-file") + 1] = os.path.join(REPO, opts[1])
    else:
        args += opts
    with pytest.raises(SystemExit) as exit_info:
        run_train(args)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and message in lines[0], lines
