"""Entropic optimal transport (Sinkhorn-Knopp) for batches of problems of any leading shape.

One solver serves every OT-based trainer. It reproduces the official ALIGN routine (docs/design/align.md §3.6) when
called with its settings, and generalises it:

* ``cost`` (*batch, a, c): problems are solved side by side; marginals broadcast against it.
* ``row_mask`` / ``col_mask``: problems with fewer rows or columns are padded to a common size. A padded
  entry gets kernel 0, marginal 0 and scaling 0 (never 0/0), so a padded problem gives exactly the plan of
  the unpadded one (docs/design/align.md §4.5).
* Stopping: the official rule is "mean |r - r_prev| over one call < threshold", checked after the row and
  the column update. ``stop_group_dims`` says which problems share such a call: the last
  ``stop_group_dims`` batch dimensions are pooled into one stopping group (0 = every problem stops on its
  own; all batch dimensions = one group, as the official prompt-level call). A group that has stopped
  keeps its scalings while the others iterate.
* NaN fallback (official, docs/design/align.md Q12): a group whose plan contains a NaN gets its kernel instead.
* ``log_domain=True`` iterates on log-scalings (stable for small eps); its stopping rule is the same mean
  over |log r - log r_prev| (a relative change), since r itself overflows there.
* ``grad=False`` (official: plans are constants) runs without autograd; ``grad=True`` differentiates
  through the iterations.
* Host syncs: whether all groups have stopped is read back only every ``sync_every`` iterations (the
  official loop reads its delta every iteration); the plans are the same.
* Diagnostics (``TEST.OT_DIAGNOSTICS`` of the OT trainers): ``plan_entropy_ratio`` (1 = uniform plan) and
  ``OTDiagnostics``, which accumulates it and the iteration counts (``return_iterations=True``) per evaluation.
"""
import torch


def sinkhorn(cost, row_marginal, col_marginal, eps, *, max_iter=100, threshold=1e-2, stop_group_dims=0,
             row_mask=None, col_mask=None, log_domain=False, grad=False, nan_to_kernel=True, return_iterations=False,
             sync_every=8):
    """Transport plans (*batch, a, c) for the kernels exp(-cost / eps).

    ``return_iterations=True`` also returns the number of iterations each stopping group ran
    (shape = the batch dimensions before the pooled ones).
    """
    batch = cost.shape[:-2]
    if not 0 <= stop_group_dims <= len(batch):
        raise ValueError(f"stop_group_dims must be between 0 and {len(batch)} for cost of shape {tuple(cost.shape)}")
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        solve = _log_sinkhorn if log_domain else _sinkhorn
        plan, iterations = solve(cost if grad else cost.detach(), row_marginal, col_marginal, eps, max_iter,
                                 threshold, stop_group_dims, row_mask, col_mask, nan_to_kernel, max(1, sync_every))
    return (plan, iterations) if return_iterations else plan


def _prepare(cost, row_marginal, col_marginal, row_mask, col_mask):
    *batch, a, c = cost.shape
    u = torch.as_tensor(row_marginal, dtype=cost.dtype, device=cost.device).expand(*batch, a)
    v = torch.as_tensor(col_marginal, dtype=cost.dtype, device=cost.device).expand(*batch, c)
    rm = None if row_mask is None else torch.as_tensor(row_mask, device=cost.device).bool().expand(*batch, a)
    cm = None if col_mask is None else torch.as_tensor(col_mask, device=cost.device).bool().expand(*batch, c)
    valid = None  # (*batch, a, c) entries of the real problem
    if rm is not None or cm is not None:
        valid = torch.ones(cost.shape, dtype=torch.bool, device=cost.device)
        if rm is not None:
            valid = valid & rm[..., :, None]
            u = u.masked_fill(~rm, 0)
        if cm is not None:
            valid = valid & cm[..., None, :]
            v = v.masked_fill(~cm, 0)
    return u, v, rm, cm, valid


class _Groups:
    """Bookkeeping of the per-group stopping rule over the pooled dimensions."""

    def __init__(self, batch_shape, stop_group_dims, rm, device):
        self.group_shape = batch_shape[:len(batch_shape) - stop_group_dims]
        self.reduce = tuple(range(len(self.group_shape), len(batch_shape) + 1))  # pooled dims + the row dim
        self.rm = rm
        self.active = torch.ones(self.group_shape, dtype=torch.bool, device=device)
        self.iterations = torch.zeros(self.group_shape, dtype=torch.long, device=device)
        self.count = None if rm is None else rm.sum(self.reduce).clamp(min=1)

    def expand(self, mask, extra_dims):
        return mask.view(*self.group_shape, *([1] * (len(self.reduce) + extra_dims)))

    def delta(self, new, old):
        diff = (new - old).abs()
        if self.rm is None:
            return diff.mean(self.reduce)
        return diff.masked_fill(~self.rm, 0).sum(self.reduce) / self.count

    def update(self, first_new, first, second_new, second, threshold):
        """One iteration's bookkeeping, on the device: active groups take the new scalings (``first`` decides
        convergence), the iteration is counted for them, and those that converged are retired."""
        delta = self.delta(first_new, first)
        keep = self.expand(self.active, 0)
        self.iterations += self.active.long()
        self.active = self.active & ~(delta < threshold)
        return torch.where(keep, first_new, first), torch.where(keep, second_new, second)

    def finished(self, iteration, sync_every):
        """Whether every group has stopped, asked of the device (a host sync) only every ``sync_every``
        iterations: groups that stopped earlier keep their scalings, so extra iterations change nothing."""
        return (iteration + 1) % sync_every == 0 and not bool(self.active.any())


def _fallback(plan, kernel, groups, nan_to_kernel):
    if not nan_to_kernel:
        return plan
    bad = torch.isnan(plan).flatten(len(groups.group_shape)).any(-1)
    return torch.where(groups.expand(bad, 1), kernel, plan) if bool(bad.any()) else plan


def _sinkhorn(cost, row_marginal, col_marginal, eps, max_iter, threshold, stop_group_dims, row_mask, col_mask,
              nan_to_kernel, sync_every):
    u, v, rm, cm, valid = _prepare(cost, row_marginal, col_marginal, row_mask, col_mask)
    kernel = torch.exp(-cost / eps)
    if valid is not None:
        kernel = kernel.masked_fill(~valid, 0)
    r = torch.ones_like(u) if rm is None else rm.to(cost.dtype)
    c = torch.ones_like(v) if cm is None else cm.to(cost.dtype)
    groups = _Groups(cost.shape[:-2], stop_group_dims, rm, cost.device)
    kernel_t = kernel.transpose(-1, -2)
    for t in range(max_iter):
        # row update, then the column update with the new rows (official order)
        r_new = u / _safe(torch.matmul(kernel, c.unsqueeze(-1)).squeeze(-1), rm)
        c_new = v / _safe(torch.matmul(kernel_t, r_new.unsqueeze(-1)).squeeze(-1), cm)
        r, c = groups.update(r_new, r, c_new, c, threshold)
        if groups.finished(t, sync_every):
            break
    plan = torch.matmul(r.unsqueeze(-1), c.unsqueeze(-2)) * kernel
    return _fallback(plan, kernel, groups, nan_to_kernel), groups.iterations


def _safe(denominator, mask):
    # padded rows/columns: divide by 1 (their marginal is 0) so no 0/0 appears, not even in gradients
    return denominator if mask is None else denominator.masked_fill(~mask, 1)


def _log_sinkhorn(cost, row_marginal, col_marginal, eps, max_iter, threshold, stop_group_dims, row_mask, col_mask,
                  nan_to_kernel, sync_every):
    u, v, rm, cm, valid = _prepare(cost, row_marginal, col_marginal, row_mask, col_mask)
    log_kernel = -cost / eps
    if valid is not None:
        # a very negative finite value (not -inf) keeps every intermediate and gradient finite
        log_kernel = log_kernel.masked_fill(~valid, torch.finfo(cost.dtype).min / 4)
    log_u = torch.log(u if rm is None else u.masked_fill(~rm, 1))
    log_v = torch.log(v if cm is None else v.masked_fill(~cm, 1))
    f, g = torch.zeros_like(u), torch.zeros_like(v)
    groups = _Groups(cost.shape[:-2], stop_group_dims, rm, cost.device)
    for t in range(max_iter):
        f_new = log_u - torch.logsumexp(log_kernel + g.unsqueeze(-2), dim=-1)
        if rm is not None:
            f_new = f_new.masked_fill(~rm, 0)
        g_new = log_v - torch.logsumexp(log_kernel + f_new.unsqueeze(-1), dim=-2)
        if cm is not None:
            g_new = g_new.masked_fill(~cm, 0)
        f, g = groups.update(f_new, f, g_new, g, threshold)
        if groups.finished(t, sync_every):
            break
    plan = torch.exp(f.unsqueeze(-1) + log_kernel + g.unsqueeze(-2))
    kernel = torch.exp(log_kernel)
    return _fallback(plan, kernel, groups, nan_to_kernel), groups.iterations


# ----- diagnostics (TEST.OT_DIAGNOSTICS): how far the plans are from uniform, how long the solver ran -----
def plan_entropy_ratio(plan, row_mask=None, col_mask=None):
    """Entropy of each plan (*batch, a, c), normalised to mass 1, over the entropy of the uniform plan on the
    same entries (log of their count; masked rows/columns do not count): 1 = uniform, 0 = all mass on one entry.
    A problem with a single entry counts as uniform (1). Returns (*batch,) in at least fp32."""
    p = plan.detach()
    p = p if p.dtype == torch.float64 else p.float()
    mass = p.sum(dim=(-2, -1), keepdim=True)
    q = p / mass
    entropy = -torch.xlogy(q, q).sum(dim=(-2, -1))
    *batch, a, c = p.shape
    rows = torch.full((), float(a), dtype=p.dtype, device=p.device)
    cols = torch.full((), float(c), dtype=p.dtype, device=p.device)
    if row_mask is not None:
        rows = torch.as_tensor(row_mask, device=p.device).to(p.dtype).sum(-1)
    if col_mask is not None:
        cols = torch.as_tensor(col_mask, device=p.device).to(p.dtype).sum(-1)
    count = (rows * cols).expand(batch) if batch else rows * cols
    uniform = torch.log(count)
    return torch.where(count > 1, entropy / uniform.clamp(min=torch.finfo(p.dtype).tiny), torch.ones_like(entropy))


class OTDiagnostics:
    """Per evaluation, per named OT level ("prompt level", "token level"): the mean plan entropy ratio
    (``plan_entropy_ratio``; 1 = uniform) and the Sinkhorn iterations per stopping group (mean, max).

    ``record`` only adds to tensors on the plans' device (no host sync); ``summary`` reads them back once."""

    def __init__(self):
        self._levels = {}

    def record(self, level, plan, iterations, row_mask=None, col_mask=None):
        with torch.no_grad():
            ratio = plan_entropy_ratio(plan, row_mask, col_mask)
            its = torch.as_tensor(iterations, device=ratio.device).double()
            s = self._levels.get(level)
            if s is None:
                zero = torch.zeros((), dtype=torch.float64, device=ratio.device)
                s = self._levels[level] = {"ratio": zero, "problems": 0, "iterations": zero.clone(), "groups": 0,
                                           "max_iterations": zero.clone(), "calls": 0}
            s["ratio"] = s["ratio"] + ratio.double().sum()
            s["problems"] += ratio.numel()
            s["iterations"] = s["iterations"] + its.sum()
            s["groups"] += its.numel()
            s["max_iterations"] = torch.maximum(s["max_iterations"], its.max() if its.numel() else s["max_iterations"])
            s["calls"] += 1

    def summary(self):
        """{level: {"entropy_ratio", "iterations", "max_iterations", "plans", "groups", "calls"}}."""
        out = {}
        for level, s in self._levels.items():
            out[level] = {"entropy_ratio": float(s["ratio"]) / max(1, s["problems"]),
                          "iterations": float(s["iterations"]) / max(1, s["groups"]),
                          "max_iterations": int(s["max_iterations"]), "plans": s["problems"], "groups": s["groups"],
                          "calls": s["calls"]}
        return out

    def report(self, summary=None):
        """One log line per level (of ``summary``, by default read now)."""
        summary = self.summary() if summary is None else summary
        return [f"OT diagnostics ({level}): mean plan entropy / uniform {v['entropy_ratio']:.4f} over {v['plans']:,} "
                f"plans (1 = uniform); Sinkhorn iterations per stopping group: mean {v['iterations']:.1f}, max "
                f"{v['max_iterations']} ({v['groups']:,} groups in {v['calls']:,} calls)"
                for level, v in summary.items()]
