"""ALIGN (trainer ALIGN / MMP) on the tiny CLIP: the scores against a literal per-pair reading of docs/design/align.md,
the MaPLe limit, chunking, caching, training, checkpoints (ours and official) and configs."""
import contextlib
import os

import pytest
import torch
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from engine.checkpoint import load_checkpoint
from tests.helpers import coop_args, make_caltech, run_train
from tests.test_sinkhorn import reference_sinkhorn

CONFIG = "vit_b16_c2_ep5_batch4_2ctx.yaml"

# 3 sets (not 2) so that confusing the m and n axes or the flattening orders shows up
SMALL = ["TRAINER.MMP.PREC", "fp32", "TRAINER.MMP.TEXT_PROMPT_DEPTH", "2", "TRAINER.MMP.TEXT_PROMPT_NUMBER", "3",
         "TRAINER.MMP.VISION_PROMPT_NUMBER", "3", "TRAINER.MMP.FEWSHOT_EPOCH_OVERRIDE", "False"]
TRAINABLE = {"prompt_learner.ctx", "prompt_learner.proj.weight", "prompt_learner.proj.bias",
             "prompt_learner.compound_prompts_text.0", "prompt_learner.compound_prompt_projections.0.weight",
             "prompt_learner.compound_prompt_projections.0.bias"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _args(root, clip, out, *extra, epochs=1, trainer="ALIGN"):
    return coop_args(root, clip, out, *SMALL, "TEST.SAVE_LOGITS", "True", *extra, trainer=trainer, epochs=epochs,
                     config=CONFIG)


def _logits(out):
    return torch.load(os.path.join(out, "logits_test.pt"), weights_only=False)["logits"]


@pytest.fixture(scope="module")
def built(tiny_clip, tmp_path_factory):
    """One ALIGN trainer (not trained) shared by the model-level tests; they may change its prompts."""
    root = make_caltech(str(tmp_path_factory.mktemp("align_data") / "data"))
    out = str(tmp_path_factory.mktemp("align_built"))
    trainer = run_train(["--no-train"] + _args(root, tiny_clip, out, "OPTIM.LR", "0.05", "OPTIM.WARMUP_EPOCH", "0",
                                               "INPUT.TRANSFORMS", "['normalize']", "DATALOADER.TEST.BATCH_SIZE", "4"))
    with torch.no_grad():  # away from the initial values, where e.g. identical deep projections hide mistakes
        g = torch.Generator().manual_seed(0)
        for p in trainer.model.prompt_learner.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    return trainer


def _images(trainer, n=5):
    return next(iter(trainer.test_loader))["img"][:n]


@contextlib.contextmanager
def _with_cfg(model, **changes):
    """Temporarily change keys of the model's TRAINER.MMP node."""
    old = {k: model.cfg[k] for k in changes}
    model.cfg.defrost()
    model.cfg.update(changes)
    try:
        yield
    finally:
        model.cfg.update(old)


# ----- a literal reading of docs/design/align.md §3: explicit row loops, one Sinkhorn call per (image, class) -----
def _normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


@torch.no_grad()
def reference_logits(model, images, token_term="similarity", beta=1.0, hierarchical=True):
    pl, eps = model.prompt_learner, 0.1
    k_cls, n_sets, b = pl.n_cls, pl.n_sets, pl.n_ctx
    m_sets = n_sets
    # text rows r = k * N + n use set n (class-major)
    set_of_text_row = [r % n_sets for r in range(k_cls * n_sets)]
    prompts = torch.cat([pl.token_prefix, torch.stack([pl.ctx[n] for n in set_of_text_row]), pl.token_suffix], 1)

    def text_hook(i, x):
        if 1 <= i <= len(pl.compound_prompts_text):
            x = x.clone()
            x[:, 1:1 + b] = torch.stack([pl.compound_prompts_text[i - 1][n] for n in set_of_text_row])
        return x

    _, text_out = model.text_encoder(prompts, pl.tokenized_prompts.argmax(-1), layer_hook=text_hook,
                                     return_tokens=True)
    # image rows r = i * M + m use set m (image-major)
    batch = images.shape[0]
    set_of_image_row = [r % m_sets for r in range(batch * m_sets)]
    first, deep = pl.proj(pl.ctx), [proj(p) for proj, p in zip(pl.compound_prompt_projections,
                                                                 pl.compound_prompts_text)]
    copies = torch.stack([images[r // m_sets] for r in range(batch * m_sets)])

    def image_hook(i, x):
        if 1 <= i <= len(deep):
            x = x.clone()
            x[:, -b:] = torch.stack([deep[i - 1][m] for m in set_of_image_row])
        return x

    _, image_out = model.image_encoder(copies, extra_tokens=torch.stack([first[m] for m in set_of_image_row]),
                                       layer_hook=image_hook, return_tokens=True)
    eot = pl.tokenized_prompts.argmax(-1)
    sims, costs = [], []
    for i in range(batch):
        for k in range(k_cls):
            window = int(eot[k * n_sets]) - 1  # set 0's end token - 1, for every set (Q4)
            s = torch.zeros(m_sets, n_sets)
            kernels, token_sims = [], []
            for m in range(m_sets):
                f = _normalize(image_out[i * m_sets + m, 0])
                visual = _normalize(image_out[i * m_sets + m, 1:])  # patches + prompt outputs, no CLS (Q5)
                for n in range(n_sets):
                    row = k * n_sets + n
                    s[m, n] = f @ _normalize(text_out[row, eot[row]])
                    token_sim = visual @ _normalize(text_out[row, :window]).t()
                    token_sims.append(token_sim)
                    kernels.append(torch.exp(-(1 - token_sim) / eps))
            plan, _ = reference_sinkhorn(torch.stack(kernels), torch.full((len(kernels), visual.shape[0]),
                                                                          1 / visual.shape[0]),
                                         torch.full((len(kernels), window), 1 / window))
            tau = (plan * torch.stack(token_sims)).sum((1, 2)).view(m_sets, n_sets)
            cost = 1 - s
            if hierarchical:
                cost = cost + beta * (tau if token_term == "similarity" else 1 - tau)
            sims.append(s)
            costs.append(cost)
    sims, costs = torch.stack(sims), torch.stack(costs)
    plan, _ = reference_sinkhorn(torch.exp(-costs / eps), torch.full(sims.shape[:2], 1 / m_sets),
                                 torch.full((sims.shape[0], n_sets), 1 / n_sets))  # one call for the batch
    return model.logit_scale.exp() * (plan * sims).sum((1, 2)).view(batch, k_cls)


@pytest.mark.parametrize("token_term,beta,hierarchical", [("similarity", 1.0, True), ("distance", 0.7, True),
                                                          ("similarity", 1.0, False)])
def test_logits_equal_a_literal_per_pair_computation(built, token_term, beta, hierarchical):
    model = built.model.eval()
    images = _images(built, 3)
    with _with_cfg(model, TOKEN_TERM=token_term, BETA=beta, HIERARCHICAL=hierarchical), torch.no_grad():
        ours = model(images)
    expected = reference_logits(model, images, token_term, beta, hierarchical)
    torch.testing.assert_close(ours, expected, rtol=0, atol=2e-4)


def test_token_term_and_its_sign_change_the_logits(built):
    """Otherwise the test above could not tell the official cost from the paper's (Q1)."""
    model = built.model.eval()
    images = _images(built)
    with torch.no_grad():
        official = model(images)
        with _with_cfg(model, TOKEN_TERM="distance"):
            paper = model(images)
        with _with_cfg(model, HIERARCHICAL=False):
            flat = model(images)
    assert (official - paper).abs().max() > 1e-2
    assert (official - flat).abs().max() > 1e-2


@pytest.mark.parametrize("hierarchical", [False, True])
def test_one_set_each_reduces_to_maple_cosine_logits(built, hierarchical):
    """M = N = 1: the prompt-level plan of a 1 x 1 problem is 1, so logit = scale * cos(f, g) of MaPLe."""
    from trainers.align import ALIGNCLIP
    from trainers.maple import MaPLeCLIP

    cfg = built.trainer_cfg.clone()
    cfg.defrost()
    cfg.update(TEXT_PROMPT_NUMBER=1, VISION_PROMPT_NUMBER=1, HIERARCHICAL=hierarchical)
    classnames = built.dm.dataset.classnames
    align = ALIGNCLIP(cfg, classnames, built.load_clip()).eval()
    maple = MaPLeCLIP(CN({"N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp32", "PROMPT_DEPTH": 2}), classnames,
                      built.load_clip()).eval()
    a, m = align.prompt_learner, maple.prompt_learner
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in a.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        m.ctx.copy_(a.ctx[0])
        m.compound_prompts_text[0].copy_(a.compound_prompts_text[0][0])
        m.proj.load_state_dict(a.proj.state_dict())
        m.compound_prompt_projections.load_state_dict(a.compound_prompt_projections.state_dict())
        images = _images(built)
        torch.testing.assert_close(align(images), maple(images), rtol=1e-5, atol=1e-4)


def test_chunked_token_level_gives_identical_logits_within_the_budget(built, monkeypatch):
    import trainers.align as align_module

    model = built.model.eval()
    images = _images(built)
    with torch.no_grad():
        whole = model(images)
        seen = []
        real = align_module.sinkhorn

        def recording(cost, *args, **kwargs):
            seen.append(cost.numel())
            return real(cost, *args, **kwargs)

        monkeypatch.setattr(align_module, "sinkhorn", recording)
        text = model.text_side()
        per_pair = 9 * (16 + 2) * text.tokens.shape[2]  # M*N * (patches + prompts) * longest window
        for budget in (per_pair, 4 * per_pair + 1):
            seen.clear()
            with _with_cfg(model, TOKEN_OT_CHUNK=budget):
                chunked = model(images)
            assert torch.equal(chunked, whole)
            token_calls = seen[:-1]  # the last call is the prompt level
            assert len(token_calls) > 1 and max(token_calls) <= budget


def test_truncated_text_pass_changes_nothing(built):
    """MODEL.TEXT_TRUNCATE (default) encodes the prompts only up to the last end token."""
    model = built.model.eval()
    images = _images(built)
    assert model.text_encoder.truncate and model.prompt_learner.text_length < 20
    with torch.no_grad():
        short = model(images)
        model.text_encoder.truncate = False
        try:
            full = model(images)
        finally:
            model.text_encoder.truncate = True
    torch.testing.assert_close(short, full, rtol=0, atol=1e-5)


def test_text_side_is_encoded_once_per_evaluation(built, monkeypatch):
    model = built.model
    calls = []
    real = type(model).text_side
    monkeypatch.setattr(type(model), "text_side", lambda self: calls.append(1) or real(self))
    built.cfg.defrost()
    built.cfg.TEST.SAVE_LOGITS = False
    built.test()
    assert len(calls) == 1 and len(built.test_loader) > 1
    # and the cache changes nothing: every batch recomputed from scratch gives the same logits
    model.eval()
    with torch.no_grad():
        batch = next(iter(built.test_loader))["img"]
        fresh = model(batch)
        model.cache_text_features()
        cached = model(batch)
        model.clear_text_cache()
    assert torch.equal(fresh, cached)


def test_training_steps_reduce_the_loss_and_reach_exactly_the_prompts(built):
    model = built.model
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "prompt_learner" not in k}
    batch = next(iter(built.train_loader_x))
    built.set_model_mode("train")
    built.epoch, built.num_batches = 0, 1000
    losses = []
    for built.batch_idx in range(4):
        built.model_zero_grad()
        losses.append(built.forward_backward(batch)["loss"])
    assert losses[-1] < losses[0], losses
    assert {n for n, p in model.named_parameters() if p.grad is not None} == TRAINABLE
    assert {n for n, p in model.named_parameters() if p.requires_grad} == TRAINABLE
    assert all(torch.equal(v, frozen[k]) for k, v in model.state_dict().items() if k in frozen)
    built.set_model_mode("eval")


def test_save_eval_only_resume_and_official_checkpoint_give_identical_logits(caltech_root, tiny_clip, tmp_path,
                                                                             monkeypatch):
    def args(out, *extra, epochs=1, trainer="ALIGN"):  # 2 sets, one step per epoch: quick
        return _args(caltech_root, tiny_clip, out, "TRAINER.MMP.TEXT_PROMPT_NUMBER", "2",
                     "TRAINER.MMP.VISION_PROMPT_NUMBER", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "24", *extra,
                     epochs=epochs, trainer=trainer)

    out = str(tmp_path / "train")
    run_train(args(out, epochs=2))
    saved = load_checkpoint(os.path.join(out, "MultiModalPromptLearner", "model.pth.tar-2"))["state_dict"]
    assert not any(k.startswith(("image_encoder.", "text_encoder.")) for k in saved)  # prompts only

    ev = str(tmp_path / "eval")
    run_train(["--eval-only", "--model-dir", out, "--load-epoch", "2"] + args(ev))
    assert torch.equal(_logits(ev), _logits(out))

    # the official layout (docs/design/align.md §7): the whole model, token buffers of other classes, under MMP
    official = str(tmp_path / "official")
    os.makedirs(os.path.join(official, "MultiModalPromptLearner"))
    state = {"prompt_learner." + k: v for k, v in saved.items() if k not in ("token_prefix", "token_suffix")}
    state.update({"prompt_learner.token_prefix": torch.zeros(3 * 2, 1, 8), "logit_scale": torch.zeros(()),
                  "prompt_learner.token_suffix": torch.zeros(3 * 2, 74, 8),
                  "image_encoder.conv1.weight": torch.zeros(1), "text_encoder.ln_final.weight": torch.zeros(1)})
    torch.save({"state_dict": state, "epoch": 2, "optimizer": None, "scheduler": None, "val_result": None},
               os.path.join(official, "MultiModalPromptLearner", "model.pth.tar-2"))
    ev2 = str(tmp_path / "eval_official")
    run_train(["--eval-only", "--model-dir", official, "--load-epoch", "2"] + args(ev2, trainer="MMP"))
    assert torch.equal(_logits(ev2), _logits(out))

    from engine.trainer import TrainerX

    real = TrainerX.run_epoch
    killed = str(tmp_path / "killed")

    def die_in_second_epoch(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(TrainerX, "run_epoch", die_in_second_epoch)
    with pytest.raises(SystemExit):  # SIGINT: one line, exit 130
        run_train(args(killed, epochs=2))
    monkeypatch.setattr(TrainerX, "run_epoch", real)
    run_train(args(killed, epochs=2))
    assert torch.equal(_logits(killed), _logits(out))


@pytest.mark.parametrize("hierarchical", [False, True])
def test_conditional_transport_branch_trains(built, hierarchical):
    """USECT crashes officially (phi undefined, Q9); here phi is a learned log-temperature."""
    from trainers.align import ALIGNCLIP

    cfg = built.trainer_cfg.clone()
    cfg.defrost()
    cfg.update(USECT=True, HIERARCHICAL=hierarchical, TEXT_PROMPT_NUMBER=2, VISION_PROMPT_NUMBER=2)
    # class names of different token lengths: the official stacking of the text windows fails on these
    names = ["ant", "hot air balloon", "bass", "grand piano", "barrel", "sea anemone"]
    model = ALIGNCLIP(cfg, names, built.load_clip())
    model.prompt_learner.train()
    assert len(set(model.prompt_learner.token_window.tolist())) > 1
    batch = next(iter(built.train_loader_x))
    loss = F.cross_entropy(model(batch["img"]), batch["label"])
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads == TRAINABLE | {"prompt_learner.phi"}


def test_masked_ct_equals_unmasked_when_nothing_is_padded():
    from trainers.align import _ct_costs

    g = torch.Generator().manual_seed(0)
    sim = 2 * torch.rand(2, 3, 2, 2, 7, 5, generator=g) - 1
    plain = _ct_costs(1 - sim, sim / 0.5)
    masked = _ct_costs(1 - sim, sim / 0.5, torch.ones(1, 3, 1, 1, 1, 5, dtype=torch.bool))
    for a, b in zip(plain, masked):
        torch.testing.assert_close(a, b)


def test_ot_fp32_rescues_fp16_features_whose_kernels_underflow(built):
    """Official fp16 runs the OT in fp16: kernels exp(-cost/eps) underflow (here eps 0.05: costs above ~0.85),
    whole rows vanish and the batch falls back to raw kernels (Q10, Q12). OT_FP32 runs that stage in fp32."""
    model = built.model.eval()
    with torch.no_grad():
        text = model.text_side()
        features, tokens = model.image_side(_images(built))
        text16 = type(text)(text.features.half(), text.tokens.half(), text.lengths)
        with _with_cfg(model, HIERARCHICAL=False, EPS=0.05):
            reference = model.scores(features.half().float(), tokens.half().float(), text16.float())
            fp16 = model.scores(features.half(), tokens.half(), text16)
    assert fp16.dtype == torch.float16
    assert fp16.float().abs().max() < 1 < reference.abs().max()  # raw kernels ~ 0 instead of a plan summing to 1
    with _with_cfg(model, HIERARCHICAL=False, EPS=0.05, OT_FP32=True), torch.no_grad():
        original = model.image_side
        model.image_side = lambda image: (features.half(), tokens.half())
        model._text_cache = text16
        try:
            rescued = model(_images(built))
        finally:
            model.image_side = original
            model.clear_text_cache()
    assert rescued.dtype == torch.float32
    torch.testing.assert_close(rescued, reference)


def test_amp_step_runs(caltech_root, tiny_clip, tmp_path):
    trainer = run_train(["--no-train"] + _args(caltech_root, tiny_clip, str(tmp_path / "amp"), "TRAINER.MMP.PREC",
                                               "amp", "TRAINER.MMP.TEXT_PROMPT_NUMBER", "2",
                                               "TRAINER.MMP.VISION_PROMPT_NUMBER", "2"))
    trainer.set_model_mode("train")
    trainer.epoch, trainer.num_batches, trainer.batch_idx = 0, 1000, 0
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert torch.isfinite(torch.tensor(summary["loss"]))
    assert trainer.model.prompt_learner.proj.weight.dtype == torch.float32
    trainer.set_model_mode("eval")
    with torch.no_grad():
        assert torch.isfinite(trainer.model_inference(next(iter(trainer.test_loader))["img"])).all()


# ----- configuration -----
def _cfg(*argv):
    import train

    return train.setup_cfg(train.build_parser().parse_args(list(argv)))


def test_official_yamls_resolve_under_both_names_and_keep_official_values():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in ("vit_b16_c2_ep5_batch4_2ctx.yaml", "sun397.yaml"):
        ours = _cfg("--trainer", "ALIGN", "--config-file", os.path.join(repo, "configs/trainers/ALIGN", name))
        official = _cfg("--trainer", "MMP", "--config-file", os.path.join(repo, "configs/trainers/MMP", name))
        assert ours.TRAINER.MMP == official.TRAINER.MMP and ours.OPTIM == official.OPTIM
    cfg = _cfg("--trainer", "MMP", "--config-file", os.path.join(repo, "configs/trainers/MMP", CONFIG))
    assert (cfg.TRAINER.MMP.TEXT_PROMPT_NUMBER, cfg.TRAINER.MMP.TEXT_PROMPT_DEPTH, cfg.OPTIM.LR,
            cfg.OPTIM.WARMUP_CONS_LR, cfg.DATALOADER.TEST.BATCH_SIZE) == (4, 9, 0.0025, 1e-5, 100)
    assert (cfg.TRAINER.MMP.TOKEN_TERM, cfg.TRAINER.MMP.USECT, cfg.TRAINER.MMP.EPS) == ("similarity", False, 0.1)
    paper = _cfg("--trainer", "ALIGN", "--config-file",
                 os.path.join(repo, "configs/trainers/ALIGN/vit_b16_c2_ep5_batch4_2ctx_paper.yaml"))
    assert paper.TRAINER.MMP.TOKEN_TERM == "distance" and paper.TRAINER.MMP.BETA == 1.0


def test_unequal_set_counts_are_refused(caltech_root, tiny_clip, tmp_path):
    with pytest.raises(SystemExit):
        run_train(["--no-train"] + _args(caltech_root, tiny_clip, str(tmp_path / "x"),
                                         "TRAINER.MMP.VISION_PROMPT_NUMBER", "2"))


def test_fewshot_epochs_follow_the_official_train_py():
    from trainers.align import ALIGN, fewshot_epochs

    cfg = _cfg("--trainer", "ALIGN", "DATASET.NUM_SHOTS", "2")
    ALIGN.check_cfg(object.__new__(ALIGN), cfg)  # what the trainer does first, before anything reads the epochs
    assert cfg.OPTIM.MAX_EPOCH == 50 and cfg.is_frozen()
    cfg = _cfg("--trainer", "ALIGN", "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base")
    ALIGN.check_cfg(object.__new__(ALIGN), cfg)
    assert cfg.OPTIM.MAX_EPOCH == 10  # base-to-new keeps the yaml's epochs

    assert [fewshot_epochs(s, "Caltech101") for s in (1, 2, 4, 8, 16, -1)] == [30, 50, 50, 80, 80, 80]
    assert fewshot_epochs(16, "ImageNet") == 20
