"""CoOp and zero-shot CLIP end to end through train.py on a tiny CLIP and a tiny Caltech101."""
import os

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.trainer import TrainerX
from tests.helpers import coop_args, run_train, saved_logits, with_flags

AUG = ["INPUT.TRANSFORMS", "['random_resized_crop', 'random_flip', 'normalize']"]


def test_train_checkpoint_eval_only_round_trip(caltech_root, tiny_clip, tmp_path):
    out = str(tmp_path / "run")
    trainer = run_train(coop_args(caltech_root, tiny_clip, out, "TEST.SAVE_LOGITS", "True",
                                  "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32"))
    folder = os.path.join(out, "prompt_learner")
    # superseded per-epoch resume files are removed; the last epoch stays, as in Dassl's layout
    assert sorted(os.listdir(folder)) == ["checkpoint", "model.pth.tar-2"]
    assert open(os.path.join(folder, "checkpoint")).read() == "model.pth.tar-2\n"
    state = load_checkpoint(os.path.join(folder, "model.pth.tar-2"))
    assert set(state["state_dict"]) == {"ctx", "token_prefix", "token_suffix"}
    assert state["state_dict"]["ctx"].shape == (4, 64) and state["epoch"] == 2
    log = open(os.path.join(out, "log.txt")).read()
    assert "Finish training" in log and "* accuracy:" in log and "epoch [2/2] batch [3/3]" in log
    trained = saved_logits(out)
    assert trained["logits"].shape == (18, 6) and len(trained["impaths"]) == 18
    assert trained["labels"].tolist() == sorted(trained["labels"].tolist())  # test-loader order

    ev = str(tmp_path / "eval")
    run_train(coop_args(caltech_root, tiny_clip, ev, "--eval-only", "--model-dir", out, "--load-epoch", "2")[:0]
              + coop_args(caltech_root, tiny_clip, ev, "TEST.SAVE_LOGITS", "True", "TRAINER.COOP.N_CTX", "4",
                          "TRAINER.COOP.PREC", "fp32")[:12] + ["--eval-only", "--model-dir", out, "--load-epoch", "2"]
              + coop_args(caltech_root, tiny_clip, ev, "TEST.SAVE_LOGITS", "True", "TRAINER.COOP.N_CTX", "4",
                          "TRAINER.COOP.PREC", "fp32")[12:])
    assert torch.equal(saved_logits(ev)["logits"], trained["logits"])
    assert 'Loading weights to prompt_learner from' in open(os.path.join(ev, "log.txt")).read()
    assert trainer.model.prompt_learner.ctx.requires_grad


def test_only_prompt_gets_gradients_and_clip_stays_bit_identical(caltech_root, tiny_clip, tmp_path):
    args = coop_args(caltech_root, tiny_clip, str(tmp_path / "r"), "TRAINER.COOP.N_CTX", "4",
                     "TRAINER.COOP.PREC", "fp32", "OPTIM.NAME", "sgd", "OPTIM.LR", "0.5", *AUG)
    trainer = run_train(with_flags(args, "--no-train"))
    model = trainer.model
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "prompt_learner" not in k}
    ctx0 = model.prompt_learner.ctx.detach().clone()
    trainer.set_model_mode("train")
    trainer.num_batches, trainer.epoch = 99, 0
    for trainer.batch_idx, batch in enumerate(trainer.train_loader_x):
        trainer.forward_backward(batch)
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads == {"prompt_learner.ctx"}
    assert not torch.equal(model.prompt_learner.ctx, ctx0)
    for k, v in model.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k
    # the frozen encoders stay in eval mode (only registered modules switch)
    assert not model.image_encoder.training and model.prompt_learner.training


def test_killed_run_resumes_to_the_same_result(caltech_root, tiny_clip, tmp_path, monkeypatch):
    common = ("TEST.SAVE_LOGITS", "True", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32", *AUG)
    full = str(tmp_path / "full")
    run_train(coop_args(caltech_root, tiny_clip, full, *common, epochs=3))

    killed = str(tmp_path / "killed")
    real_run_epoch = TrainerX.run_epoch

    def run_epoch_then_die(self):
        if self.epoch == 2:
            raise KeyboardInterrupt("killed")
        return real_run_epoch(self)

    monkeypatch.setattr(TrainerX, "run_epoch", run_epoch_then_die)
    with pytest.raises(SystemExit):  # SIGINT: one line, exit 130
        run_train(coop_args(caltech_root, tiny_clip, killed, *common, epochs=3))
    monkeypatch.setattr(TrainerX, "run_epoch", real_run_epoch)
    assert os.listdir(os.path.join(killed, "prompt_learner")) == ["checkpoint", "model.pth.tar-2"] or sorted(
        os.listdir(os.path.join(killed, "prompt_learner"))) == ["checkpoint", "model.pth.tar-2"]
    run_train(coop_args(caltech_root, tiny_clip, killed, *common, epochs=3))
    resumed_log = [f for f in os.listdir(killed) if f.startswith("log.txt-")]
    assert resumed_log and "Previous epoch: 2" in open(os.path.join(killed, resumed_log[0])).read()
    assert torch.equal(saved_logits(killed)["logits"], saved_logits(full)["logits"])


def test_init_weights_start_from_a_checkpoint(caltech_root, tiny_clip, tmp_path):
    first = str(tmp_path / "a")
    run_train(coop_args(caltech_root, tiny_clip, first, "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32",
                        epochs=1))
    ckpt_path = os.path.join(first, "prompt_learner", "model.pth.tar-1")
    trainer = run_train(with_flags(coop_args(
        caltech_root, tiny_clip, str(tmp_path / "b"), "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32",
        "MODEL.INIT_WEIGHTS", ckpt_path), "--no-train"))
    assert torch.equal(trainer.model.prompt_learner.ctx.detach(), load_checkpoint(ckpt_path)["state_dict"]["ctx"])


@pytest.mark.parametrize("position", ["middle", "front"])
def test_class_token_positions_keep_length_and_end_token(caltech_root, tiny_clip, tmp_path, position):
    trainer = run_train(with_flags(coop_args(
        caltech_root, tiny_clip, str(tmp_path / position), "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32",
        "TRAINER.COOP.CLASS_TOKEN_POSITION", position), "--no-train"))
    pl = trainer.model.prompt_learner
    prompts = pl()
    end = torch.cat([pl.token_prefix, pl.ctx.unsqueeze(0).expand(pl.n_cls, -1, -1), pl.token_suffix], 1)
    assert prompts.shape == end.shape
    for i, n in enumerate(pl.name_lens):  # same tokens, moved: the class name now precedes the rest
        start = 1 if position == "front" else 1 + pl.n_ctx // 2
        assert torch.equal(prompts[i, start:start + n], pl.token_suffix[i, :n])
        assert torch.equal(prompts[i, 1 + pl.n_ctx + n:], pl.token_suffix[i, n:])


def test_csc_and_word_init(caltech_root, tiny_clip, tmp_path):
    trainer = run_train(with_flags(coop_args(caltech_root, tiny_clip, str(tmp_path / "c"), "TRAINER.COOP.N_CTX",
                                              "4", "TRAINER.COOP.CSC", "True", "TRAINER.COOP.PREC", "fp32"),
                                    "--no-train"))
    assert trainer.model.prompt_learner.ctx.shape == (6, 4, 64)
    trainer = run_train(with_flags(coop_args(caltech_root, tiny_clip, str(tmp_path / "w"),
                                              "TRAINER.COOP.CTX_INIT", "a photo of a", "TRAINER.COOP.PREC", "fp32"),
                                    "--no-train"))
    pl = trainer.model.prompt_learner
    text = trainer.model.text_encoder
    from models import tokenize

    words = text.embed(tokenize("a photo of a"))[0, 1:5]
    assert pl.n_ctx == 4 and torch.equal(pl.ctx.detach(), words)


def test_zero_shot_and_ensemble(caltech_root, tiny_clip, tmp_path):
    zs = str(tmp_path / "zs")
    trainer = run_train(with_flags(coop_args(caltech_root, tiny_clip, zs, "TEST.SAVE_LOGITS", "True",
                                              trainer="ZeroshotCLIP", config=None), "--eval-only"))
    assert saved_logits(zs)["logits"].shape == (18, 6)
    assert "load_model() is skipped" in open(os.path.join(zs, "log.txt")).read()
    from models import tokenize
    from models.prompted_clip import normalize

    with torch.no_grad():
        names = ["accordion", "airplane", "anchor", "ant", "barrel", "bass"]
        ref = normalize(trainer.model.text_encoder.encode_tokens(tokenize([f"a photo of a {n}." for n in names])))
        # the official zero-shot trainer runs CLIP in fp16 (here too): equal within fp16 rounding of the
        # truncated encoding (MODEL.TEXT_TRUNCATE)
        assert ref.dtype == torch.float16
        assert torch.allclose(trainer.model.class_embeddings().float(), ref.float(), atol=2e-3)
    trainer2 = run_train(with_flags(coop_args(caltech_root, tiny_clip, str(tmp_path / "zs2"),
                                               trainer="ZeroshotCLIP2", config=None), "--eval-only"))
    trainer3 = run_train(with_flags(coop_args(caltech_root, tiny_clip, str(tmp_path / "zs3"),
                                               trainer="ZeroshotCLIP2", config=None), "--eval-only"))
    assert len(trainer2.templates()) == 8 and trainer3.templates() == trainer2.templates()  # no accumulation


def test_evaluation_encodes_the_classes_once(caltech_root, tiny_clip, tmp_path, monkeypatch):
    trainer = run_train(with_flags(coop_args(caltech_root, tiny_clip, str(tmp_path / "c"), "TRAINER.COOP.N_CTX", "4",
                                             "TRAINER.COOP.PREC", "fp32", "DATALOADER.TEST.BATCH_SIZE", "4"),
                                   "--no-train"))
    calls = []
    real = type(trainer.model).text_features
    monkeypatch.setattr(type(trainer.model), "text_features", lambda self: calls.append(1) or real(self))
    trainer.test()
    assert len(calls) == 1 and len(trainer.test_loader) > 1
    trainer.cfg.defrost()
    trainer.cfg.TEST.CACHE_TEXT_FEATURES = False
    calls.clear()
    trainer.test()
    assert len(calls) == len(trainer.test_loader)
