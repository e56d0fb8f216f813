"""Trainer classes with Dassl's hook names and call order (docs/design/engine.md §4-6).

Porting a Dassl trainer means changing imports only: ``dassl.engine`` -> ``engine``.
Differences from Dassl, all deliberate and documented in the README:
* checkpoints are written atomically and, with ``TRAIN.SAVE_RESUME_STATE`` (default on), after every
  epoch together with the RNG state, so a killed run resumes from its last complete epoch and ends
  exactly as an uninterrupted one (superseded per-epoch files are removed);
* loading never executes pickled code and reports trainable tensors missing from a checkpoint;
* ``TEST.SAVE_LOGITS`` writes the test logits;
* a training run writes its resolved config (``config.yaml``) and its cost figures (``cost.json``), its
  checkpoints name the class names; ``load_model`` also takes a prompt bundle file (tools/export.py);
* built with ``classnames`` instead of a dataset, a trainer predicts on those classes (predict.py).
"""
import datetime
import os
import sys
import time
import types
from collections import OrderedDict

import torch
import torch.nn as nn
from tqdm import tqdm

from meta.runs import write_text_atomic

from .bundle import read_bundle
from .checkpoint import checkpoint_file_name, get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from .cost import CostMeter, trainable_parameter_count, write_cost
from .data import DataManager
from .evaluation import build_evaluator, compute_accuracy
from .registry import Registry
from .utils.io import atomic_write
from .utils.tools import AverageMeter, MetricMeter, UserError

TRAINER_REGISTRY = Registry("trainer")


class NonFiniteLoss(UserError, FloatingPointError):
    """Training stopped on a NaN/inf loss or gradient; the message says where, why and what to do."""


def build_trainer(cfg):
    cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    if cfg.VERBOSE:
        print(f"Loading trainer: {cfg.TRAINER.NAME}")
    return cls(cfg)


def _show_progress():
    return sys.stderr.isatty()


class TrainerBase:
    """Registered models/optimizers/schedulers, checkpointing and the generic epoch loop."""

    def __init__(self):
        self._models = OrderedDict()
        self._optims = OrderedDict()
        self._scheds = OrderedDict()
        self._writer = None
        self.scaler = None  # torch.amp.GradScaler under fp16 autocast (see SimpleTrainer.build_grad_scaler)
        self.skipped_steps = 0  # optimizer steps the loss scaler skipped (inf/NaN in the scaled gradients)

    def register_model(self, name="model", model=None, optim=None, sched=None):
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot assign model before super().__init__() call")
        assert name not in self._models, "Found duplicate model names"
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None):
        names_real = list(self._models.keys())
        if names is not None:
            names = [names] if isinstance(names, str) else names
            for name in names:
                assert name in names_real
            return names
        return names_real

    # ----- checkpoints -----
    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        for name in self.get_model_names():
            state = {
                "state_dict": self.checkpoint_state_dict(name),
                "epoch": epoch + 1,
                "optimizer": self._optims[name].state_dict() if self._optims[name] is not None else None,
                "scheduler": self._scheds[name].state_dict() if self._scheds[name] is not None else None,
                "val_result": val_result,
                "rng_state": get_rng_state(),
            }
            if self.scaler is not None:
                state["scaler"] = self.scaler.state_dict()
            state.update(self.checkpoint_extras())
            save_checkpoint(state, os.path.join(directory, name), is_best=is_best, model_name=model_name)

    def checkpoint_state_dict(self, name):
        """What is saved for a registered model; trainers override to save less (e.g. only prompts)."""
        return self._models[name].state_dict()

    def checkpoint_extras(self):
        """Entries saved beside the state dict of every checkpoint (the class names, the CLIP weights' hash)."""
        return {}

    def bundle_state_dicts(self):
        """{model name: its checkpoint tensors without those rebuilt for the classes}: what a bundle holds."""
        return {name: OrderedDict((k, v) for k, v in self.checkpoint_state_dict(name).items()
                                  if not _matches(k, self.checkpoint_ignored_keys))
                for name in self.get_model_names()}

    def check_bundle(self, bundle, path):
        """Hook: refuse a bundle written for another trainer or CLIP (one-line ``UserError``)."""

    def resume_model_if_exist(self, directory):
        names = self.get_model_names()
        if not names or not all(os.path.isdir(os.path.join(directory, n)) for n in names):
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        start_epoch = 0
        for name in names:
            path = os.path.join(directory, name)
            pointer = os.path.join(path, "checkpoint")
            if not os.path.isfile(pointer):
                raise UserError(f"{path} has no 'checkpoint' file; delete the folder or pass another --output-dir")
            with open(pointer) as f:
                fpath = os.path.join(path, f.readline().strip())
            print(f'Loading checkpoint from "{fpath}"')
            checkpoint = load_checkpoint(fpath)
            self.load_state_dict_checked(name, checkpoint["state_dict"], ignored=())
            print("Loaded model weights")
            if self._optims[name] is not None and checkpoint.get("optimizer"):
                self._optims[name].load_state_dict(checkpoint["optimizer"])
                print("Loaded optimizer")
            if self._scheds[name] is not None and checkpoint.get("scheduler"):
                self._scheds[name].load_state_dict(checkpoint["scheduler"])
                print("Loaded scheduler")
            if self.scaler is not None and checkpoint.get("scaler"):
                self.scaler.load_state_dict(checkpoint["scaler"])
            if checkpoint.get("rng_state") is not None:
                set_rng_state(checkpoint["rng_state"])
            start_epoch = checkpoint["epoch"]
            print(f"Previous epoch: {start_epoch}")
        return start_epoch

    # keys of a checkpoint that are rebuilt for the current classes and so never loaded (docs/design/engine.md §6.5)
    checkpoint_ignored_keys = ()

    def load_model(self, directory, epoch=None):
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        if os.path.isfile(directory):
            return self.load_bundle(directory)
        names = self.get_model_names()
        model_file = checkpoint_file_name(epoch)
        for name in names:
            model_path = os.path.join(directory, name, model_file)
            if not os.path.exists(model_path):
                found = sorted(os.listdir(os.path.join(directory, name))) if os.path.isdir(
                    os.path.join(directory, name)) else []
                raise UserError(f'model not found at "{model_path}"'
                                + (f"; that folder has {', '.join(found)}" if found else
                                   f"; expected a folder {name}/ under --model-dir with {model_file}"))
            checkpoint = load_checkpoint(model_path)
            state_dict = checkpoint["state_dict"]
            print(f'Loading weights to {name} from "{model_path}" (epoch = {checkpoint.get("epoch")})')
            self.load_state_dict_checked(name, state_dict, ignored=self.checkpoint_ignored_keys)

    def load_bundle(self, path):
        """The learned tensors of a prompt bundle (tools/export.py), after ``check_bundle``."""
        bundle = read_bundle(path)
        self.check_bundle(bundle, path)
        for name in self.get_model_names():
            if name not in bundle["state_dicts"]:
                raise UserError(f"the bundle {path} has no tensors for {name} (it holds "
                                f"{', '.join(bundle['state_dicts']) or 'none'}): it was written by another trainer")
            print(f'Loading weights to {name} from the bundle "{path}" (epoch = {bundle.get("epoch")})')
            self.load_state_dict_checked(name, bundle["state_dicts"][name], ignored=self.checkpoint_ignored_keys)
        return bundle

    def load_state_dict_checked(self, name, state_dict, ignored=()):
        """Load non-strictly, leaving out ``ignored`` keys (tensors rebuilt for the current classes), but
        fail if any other trainable tensor is absent or has another shape."""
        model = self._models[name]
        state_dict = OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in state_dict.items())
        state_dict = self.adapt_checkpoint(name, state_dict)
        state_dict = OrderedDict((k, v) for k, v in state_dict.items() if not _matches(k, ignored))
        trainable = [n for n, p in model.named_parameters() if p.requires_grad and not _matches(n, ignored)]
        missing = [n for n in trainable if n not in state_dict]
        if missing:
            raise UserError(f"checkpoint for {name} lacks trainable tensors {', '.join(missing[:5])}"
                            f"{' ...' if len(missing) > 5 else ''}: it was written by another trainer or config")
        own = model.state_dict()
        for k, v in state_dict.items():
            if k in own and own[k].shape != v.shape:
                raise UserError(f"checkpoint tensor {name}.{k} has shape {tuple(v.shape)} but the model expects "
                                f"{tuple(own[k].shape)}: the checkpoint was trained with another config or backbone")
        model.load_state_dict(state_dict, strict=False)

    def adapt_checkpoint(self, name, state_dict):
        """Hook: rename keys of checkpoints written by official releases. Identity by default."""
        return state_dict

    # ----- modes and steps -----
    def set_model_mode(self, mode="train", names=None):
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ["test", "eval"]:
                self._models[name].eval()
            else:
                raise KeyError(mode)

    def update_lr(self, names=None):
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss, what="loss"):
        if not torch.isfinite(loss).all():
            raise NonFiniteLoss(self.nonfinite_message(what))

    def nonfinite_message(self, what):
        """One line: where it happened, the precision, the likely cause, and what is kept to resume from."""
        where = f"epoch {getattr(self, 'epoch', 0) + 1}, batch {getattr(self, 'batch_idx', 0) + 1}"
        kept = self.last_checkpoint()
        kept = (f"the last complete checkpoint {kept} is kept; rerun with the fix and the same --output-dir to "
                "resume from it" if kept else "no epoch had completed, so a rerun with the fix starts over")
        return (f"{what} became NaN or inf at {where} (PREC {getattr(self, 'prec', 'fp32')}): "
                f"{self.nonfinite_hint()}; {kept}")

    def nonfinite_hint(self):
        """Hook: the likely cause of a NaN/inf loss and its fix (trainers with known causes override it)."""
        if getattr(self, "prec", "fp32") == "fp16":
            return "fp16 overflow or underflow in the loss or its gradients is the usual cause; use PREC amp or fp32"
        return "a too high learning rate or a bad input is the usual cause; lower OPTIM.LR or check the data"

    def last_checkpoint(self):
        """The file the first registered model's ``checkpoint`` pointer names in the output folder, or None."""
        names = self.get_model_names()
        directory = getattr(self, "output_dir", "")
        if not names or not directory:
            return None
        pointer = os.path.join(directory, names[0], "checkpoint")
        try:
            with open(pointer) as f:
                path = os.path.join(directory, names[0], f.readline().strip())
        except OSError:
            return None
        return path if os.path.isfile(path) else None

    def init_writer(self, log_dir):
        if self.__dict__.get("_writer") is None:
            from torch.utils.tensorboard import SummaryWriter

            print(f"Initialize tensorboard (log_dir={log_dir})")
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self):
        if self._writer is not None:
            self._writer.close()

    def write_scalar(self, tag, scalar_value, global_step=None):
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    def train(self, start_epoch, max_epoch):
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self):
        pass

    def after_train(self):
        pass

    def before_epoch(self):
        pass

    def after_epoch(self):
        pass

    def run_epoch(self):
        raise NotImplementedError

    def test(self, split=None):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    # ----- the training step: the one place for backward, loss scaling, the NaN check and the update -----
    def model_zero_grad(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss):
        """NaN/inf check, backward of the (loss-scaled, under fp16 autocast) loss, NaN/inf check of the
        gradients (under the loss scaler, an overflow skips the step instead: see ``model_update``)."""
        self.detect_anomaly(loss)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            return
        loss.backward()
        grads = [p.grad for name in self.get_model_names() if self._optims[name] is not None
                 for group in self._optims[name].param_groups for p in group["params"] if p.grad is not None]
        if grads and not bool(torch.stack([g.isfinite().all() for g in grads]).all()):  # one host read a step
            raise NonFiniteLoss(self.nonfinite_message("a gradient"))

    def adjust_gradients(self):
        """Hook between backward and the optimizer step: gradient surgery (ProGrad). The gradients are
        still multiplied by the loss scale under fp16 autocast; a change that is linear in them is safe."""

    def model_update(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                if self.scaler is not None:
                    self.scaler.step(self._optims[name])  # skipped when the scaled gradients overflowed
                else:
                    self._optims[name].step()
        if self.scaler is not None:
            scale = self.scaler.get_scale()
            self.scaler.update()
            if self.scaler.get_scale() < scale:  # the scaler lowers its scale exactly when it skipped the step
                self.skipped_steps += 1

    def model_backward_and_update(self, loss, names=None):
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.adjust_gradients()
        self.model_update(names)


class ClassNamesOnly:
    """Stands for the DataManager when a model is built for given class names without a dataset."""

    def __init__(self, classnames):
        self.lab2cname = dict(enumerate(classnames))
        self.num_classes = len(classnames)
        self.dataset = types.SimpleNamespace(classnames=classnames, lab2cname=self.lab2cname,
                                             num_classes=self.num_classes)


def _matches(key, patterns):
    """``key`` is one of ``patterns`` or ends with ``.<pattern>`` (e.g. token_prefix, VPT_fc.weight)."""
    return any(key == p or key.endswith("." + p) for p in patterns)


class SimpleTrainer(TrainerBase):
    """Builds data, model and evaluator; implements the default hooks and ``test``."""

    def __init__(self, cfg, classnames=None):
        """``classnames``: no dataset is read; the model is built for these classes (prediction)."""
        super().__init__()
        self.check_cfg(cfg)
        if torch.cuda.is_available() and cfg.USE_CUDA:
            self.device = torch.device("cuda")
        else:
            self.device = torch.device("cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.cost = CostMeter(self.device)
        if classnames is None:
            self.build_data_loader()
        else:
            self.use_classnames(classnames)
        self.build_model()
        self.build_grad_scaler()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -float("inf")

    def check_cfg(self, cfg):
        """Hook: validate the (frozen) config; raise ``UserError`` with one line. Never writes to it:
        values derived from others are set before freezing by the trainer's ``resolve_cfg``."""

    @classmethod
    def resolve_cfg(cls, cfg):
        """Hook: complete the built config before it is frozen (train.py calls it once, also for the sweep's
        --dry-run); e.g. epochs that the official code derives from the shots. Print a warning for every
        value changed here."""

    # ----- precision: "fp32", "fp16" (the model's own storage) or "amp" (autocast, fp32 master weights) -----
    prec = "fp32"

    @property
    def amp_dtype(self):
        dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
        if self.cfg.MODEL.AMP_DTYPE not in dtypes:
            raise UserError(f"MODEL.AMP_DTYPE must be fp16 or bf16, got {self.cfg.MODEL.AMP_DTYPE!r}")
        return dtypes[self.cfg.MODEL.AMP_DTYPE]

    def autocast(self):
        """Mixed precision for ``prec == "amp"``; a no-op context otherwise."""
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.prec == "amp")

    def build_grad_scaler(self):
        """Loss scaling only for fp16 autocast with something to optimise (bf16 has fp32's range)."""
        has_optim = any(o is not None for o in self._optims.values())
        if has_optim and self.prec == "amp" and self.amp_dtype == torch.float16:
            self.scaler = torch.amp.GradScaler(self.device.type)

    # None: Dassl's rule for the last incomplete training batch; a trainer may fix it (SEP: never drop)
    train_drop_last = None

    def build_data_loader(self):
        dm = DataManager(self.cfg, train_drop_last=self.train_drop_last)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def use_classnames(self, classnames):
        """What ``build_model`` and the evaluator read of the data, for given class names and no images."""
        classnames = list(classnames)
        self.dm = ClassNamesOnly(classnames)
        self.train_loader_x = self.train_loader_u = self.val_loader = self.test_loader = None
        self.num_classes, self.num_source_domains = len(classnames), 0
        self.lab2cname = self.dm.lab2cname

    def build_model(self):
        raise NotImplementedError("a trainer must implement build_model()")

    def checkpoint_extras(self):
        return {"classnames": list(self.dm.dataset.classnames)}

    def trainable_parameter_count(self):
        return trainable_parameter_count(self._models.values())

    def precision_name(self):
        return f"amp ({self.cfg.MODEL.AMP_DTYPE})" if self.prec == "amp" else self.prec

    def record_cost(self):
        """Write ``cost.json`` and the log's ``=> cost`` line (after training, or after an evaluation-only run)."""
        cost = self.cost.summary(self.trainable_parameter_count(), self.precision_name())
        write_cost(self.output_dir, cost)
        return cost

    def train(self):
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self):
        directory = self.cfg.RESUME or self.output_dir
        # the resolved config, which predict.py and tools/export.py rebuild the model from
        write_text_atomic(os.path.join(self.output_dir, "config.yaml"), self.cfg.dump())
        self.start_epoch = self.resume_model_if_exist(directory)
        self.init_writer(os.path.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()
        self.cost.start("train")

    def after_train(self):
        self.cost.train_seconds = self.cost.stop("train")
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = round(time.time() - self.time_start)
        print(f"Elapsed: {datetime.timedelta(seconds=elapsed)}")
        self.record_cost()
        self.close_writer()

    def after_epoch(self):
        last_epoch = (self.epoch + 1) == self.max_epoch
        do_test = not self.cfg.TEST.NO_TEST
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = freq > 0 and (self.epoch + 1) % freq == 0
        if do_test and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir, val_result=curr_result, model_name="model-best.pth.tar")
        if meet_checkpoint_freq or last_epoch or self.cfg.TRAIN.SAVE_RESUME_STATE:
            self.save_model(self.epoch, self.output_dir)
            self._remove_superseded_checkpoint(self.epoch)

    def _remove_superseded_checkpoint(self, epoch):
        """Delete the previous epoch's file if it was written only so the run could resume."""
        previous = epoch  # file number of the epoch before this one (files are numbered epoch+1)
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        if previous < 1 or (freq > 0 and previous % freq == 0):
            return
        for name in self.get_model_names():
            path = os.path.join(self.output_dir, name, f"model.pth.tar-{previous}")
            if os.path.isfile(path):
                os.remove(path)

    @torch.no_grad()
    def test(self, split=None):
        self.set_model_mode("eval")
        self.evaluator.reset()
        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")
        self.cost.start("test")
        self.before_test(split)
        save = self.cfg.TEST.SAVE_LOGITS
        all_logits, all_labels, all_paths = [], [], []
        images = 0
        for batch in tqdm(data_loader, disable=not _show_progress(), desc=f"test ({split})"):
            input, label = self.parse_batch_test(batch)
            output = self.model_inference(input)
            self.evaluator.process(output, label)
            images += len(label)
            if save:
                all_logits.append(output.float().cpu())
                all_labels.append(label.cpu())
                all_paths.extend(batch["impath"])
        self.after_test(split)
        self.cost.test_done(self.cost.stop("test"), images)
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        if save:
            path = os.path.join(self.output_dir, f"logits_{split}.pt")
            with atomic_write(path, "wb") as f:
                torch.save({"logits": torch.cat(all_logits), "labels": torch.cat(all_labels),
                            "impaths": all_paths}, f)
            print(f"Logits saved to {path}")
        return list(results.values())[0]

    def before_test(self, split):
        """Hook: e.g. encode the class prompts once for the whole evaluation."""

    def after_test(self, split):
        """Hook: release what ``before_test`` cached."""

    def model_inference(self, input):
        with self.autocast():
            return self.model(input)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names=None):
        names = self.get_model_names(names)
        return self._optims[names[0]].param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """Trainer over the labelled loader ``train_loader_x``."""

    def run_epoch(self):
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        print_freq = self.cfg.TRAIN.PRINT_FREQ
        end = time.time()
        skipped_before = self.skipped_steps
        images = 0
        self.cost.start("epoch")
        bar = tqdm(total=self.num_batches, disable=not _show_progress(), leave=False,
                   desc=f"epoch {self.epoch + 1}/{self.max_epoch}")
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            images += len(batch["label"])
            batch_time.update(time.time() - end)
            losses.update(loss_summary)
            bar.update(1)
            if (self.batch_idx + 1) % print_freq == 0 or self.num_batches < print_freq:
                nb_remain = self.num_batches - self.batch_idx - 1
                nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
                eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
                print(" ".join([
                    f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                    f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                    f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                    f"{losses}",
                    f"lr {self.get_current_lr():.4e}",
                    f"eta {eta}",
                ]))
            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()
        bar.close()
        self.cost.epoch_done(self.cost.stop("epoch"), images)
        if self.skipped_steps > skipped_before:
            print(f"epoch [{self.epoch + 1}/{self.max_epoch}]: the fp16 loss scaler skipped "
                  f"{self.skipped_steps - skipped_before} of {self.num_batches} steps (inf/NaN in the scaled "
                  f"gradients; it lowers its scale and continues)")

    def compute_loss(self, input, label):
        """Hook: ``(loss, logits or None)`` for one batch, run under autocast. Default: cross-entropy."""
        logits = self.model(input)
        return torch.nn.functional.cross_entropy(logits, label), logits

    def forward_backward(self, batch):
        """One training step: loss, backward and update (``model_backward_and_update``), LR step after the
        epoch's last batch (Dassl's convention)."""
        input, label = self.parse_batch_train(batch)[:2]
        with self.autocast():
            loss, logits = self.compute_loss(input, label)
        self.model_backward_and_update(loss)
        summary = {"loss": loss.item()}
        if logits is not None:
            summary["acc"] = compute_accuracy(logits, label)[0].item()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def parse_batch_train(self, batch):
        input = batch["img"].to(self.device)
        label = batch["label"].to(self.device)
        domain = batch["domain"].to(self.device)
        return input, label, domain


__all__ = ["TRAINER_REGISTRY", "TrainerBase", "SimpleTrainer", "TrainerX", "build_trainer", "nn"]
