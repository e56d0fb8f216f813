"""Classification evaluator printing Dassl's result block (docs/design/engine.md §5.2, §7)."""
import os
from collections import OrderedDict, defaultdict

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score

from ..registry import Registry
from meta.runs import format_result

EVALUATOR_REGISTRY = Registry("evaluator")


def build_evaluator(cfg, **kwargs):
    name = cfg.TEST.EVALUATOR
    cls = EVALUATOR_REGISTRY.get(name)
    if cfg.VERBOSE:
        print(f"Loading evaluator: {name}")
    return cls(cfg, **kwargs)


def compute_accuracy(output, target, topk=(1,)):
    """Top-k accuracy in percent of the batch, one 1-element tensor per k."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    maxk = max(topk)
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / target.size(0)) for k in topk]


@EVALUATOR_REGISTRY.register()
class Classification:
    def __init__(self, cfg, lab2cname=None, **kwargs):
        self.cfg = cfg
        self._lab2cname = lab2cname
        self._per_class_res = None
        self.reset()

    def reset(self):
        self._correct = 0
        self._total = 0
        self._y_true = []
        self._y_pred = []
        if self.cfg.TEST.PER_CLASS_RESULT:
            assert self._lab2cname is not None
            self._per_class_res = defaultdict(list)

    def process(self, mo, gt):
        pred = mo.max(1)[1]
        matches = pred.eq(gt).float()
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.data.cpu().numpy().tolist())
        self._y_pred.extend(pred.data.cpu().numpy().tolist())
        if self._per_class_res is not None:
            for i, label in enumerate(gt):
                self._per_class_res[int(label.item())].append(int(matches[i].item()))

    def evaluate(self):
        results = OrderedDict()
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        macro_f1 = 100.0 * f1_score(self._y_true, self._y_pred, average="macro", labels=np.unique(self._y_true))
        results["accuracy"] = acc
        results["error_rate"] = err
        results["macro_f1"] = macro_f1
        print(format_result(self._total, self._correct, acc, err, macro_f1))
        if self._per_class_res is not None:
            print("=> per-class result")
            accs = []
            for label in sorted(self._per_class_res):
                res = self._per_class_res[label]
                correct, total = sum(res), len(res)
                class_acc = 100.0 * correct / total
                accs.append(class_acc)
                print(f"* class: {label} ({self._lab2cname[label]})\ttotal: {total:,}\tcorrect: {correct:,}\t"
                      f"acc: {class_acc:.1f}%")
            mean_acc = float(np.mean(accs))
            print(f"* average: {mean_acc:.1f}%")
            results["perclass_accuracy"] = mean_acc
        if self.cfg.TEST.COMPUTE_CMAT:
            cmat = confusion_matrix(self._y_true, self._y_pred, normalize="true")
            save_path = os.path.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            torch.save(cmat, save_path)
            print(f"Confusion matrix is saved to {save_path}")
        return results
