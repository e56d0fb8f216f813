"""models/sinkhorn.py against POT and against a plain per-call loop with the official semantics (docs/design/align.md
§3.6)."""
import ot
import pytest
import torch

from models.sinkhorn import sinkhorn


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference_sinkhorn(kernel, u, v, max_iter=100, threshold=1e-2):
    """One official call: Q problems (Q, a, c) that stop together on mean |r - r_prev| over all Q*a entries,
    checked after the row and the column update; a NaN anywhere gives the kernel back.
    Returns (plan, iterations)."""
    r, c = torch.ones_like(u), torch.ones_like(v)
    iterations = 0
    for _ in range(max_iter):
        previous = r
        r = u / (kernel @ c.unsqueeze(-1)).squeeze(-1)
        c = v / (kernel.transpose(1, 2) @ r.unsqueeze(-1)).squeeze(-1)
        iterations += 1
        if (r - previous).abs().mean().item() < threshold:
            break
    plan = r.unsqueeze(-1) * c.unsqueeze(-2) * kernel
    return (kernel if torch.isnan(plan).any() else plan), iterations


def _random_cost(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.rand(*shape, generator=g, dtype=torch.float64)  # cosine distances lie in [0, 2]


@pytest.mark.parametrize("log_domain", [False, True])
def test_converged_plans_equal_pot(log_domain):
    cost = _random_cost(2, 3, 5, 7)
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 5, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(2, 3, 7, generator=g, dtype=torch.float64) + 0.1
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    plan = sinkhorn(cost, a, b, 0.1, max_iter=5000, threshold=0, log_domain=log_domain)
    for i in range(2):
        for j in range(3):
            expected = ot.sinkhorn(a[i, j], b[i, j], cost[i, j], 0.1, numItermax=100000, stopThr=1e-13)
            torch.testing.assert_close(plan[i, j], expected, rtol=1e-9, atol=1e-12)


def test_uniform_marginals_equal_pot_and_marginals_hold():
    cost = _random_cost(4, 6, 9, seed=3)
    plan = sinkhorn(cost, 1 / 6, 1 / 9, 0.05, max_iter=5000, threshold=0)
    a, b = torch.full((6,), 1 / 6, dtype=torch.float64), torch.full((9,), 1 / 9, dtype=torch.float64)
    for q in range(4):
        expected = ot.sinkhorn(a, b, cost[q], 0.05, numItermax=100000, stopThr=1e-13)
        torch.testing.assert_close(plan[q], expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(plan.sum(-1), torch.full((4, 6), 1 / 6, dtype=torch.float64))


@pytest.mark.parametrize("sync_every", [1, 8, 1000])
def test_per_group_stopping_and_masks_equal_the_per_call_loop(sync_every):
    """(image, class) groups of M*N problems padded to a common token count = one official call per group on
    the unpadded problems: same plans, same iteration counts, zero mass on padding, however rarely the
    solver reads its stop flag back (1000: never, all 100 iterations run)."""
    batch, classes, pairs, rows, width = 3, 4, 6, 11, 8
    lengths = torch.tensor([8, 3, 5, 8])
    cost = 1 - torch.rand(batch, classes, pairs, rows, width, generator=torch.Generator().manual_seed(5))
    mask = torch.arange(width) < lengths[:, None]  # (classes, width)
    v = (1.0 / lengths.float())[:, None, None].expand(classes, 1, width)
    plan, iterations = sinkhorn(cost, 1 / rows, v, 0.1, stop_group_dims=1, col_mask=mask[:, None, :],
                                return_iterations=True, sync_every=sync_every)
    assert iterations.shape == (batch, classes)
    for i in range(batch):
        for k in range(classes):
            n = int(lengths[k])
            kernel = torch.exp(-cost[i, k, :, :, :n] / 0.1)
            expected, steps = reference_sinkhorn(kernel, torch.full((pairs, rows), 1 / rows),
                                                 torch.full((pairs, n), 1 / n))
            torch.testing.assert_close(plan[i, k, :, :, :n], expected, rtol=1e-6, atol=1e-9)
            assert int(iterations[i, k]) == steps
            assert not plan[i, k, :, :, n:].any()
    assert len(set(iterations.flatten().tolist())) > 1  # the groups really stopped at different iterations


def test_row_masks_and_one_global_group():
    cost = _random_cost(5, 6, 4, seed=7)
    rows = torch.tensor([6, 2, 4, 6, 3])
    row_mask = torch.arange(6) < rows[:, None]
    u = row_mask.double() / rows[:, None]
    plan, iterations = sinkhorn(cost, u, 1 / 4, 0.1, stop_group_dims=1, row_mask=row_mask, return_iterations=True)
    assert iterations.shape == ()
    for q in range(5):  # padded rows carry no mass; the final column update makes column sums exact
        n = int(rows[q])
        assert not plan[q, n:].any()
        torch.testing.assert_close(plan[q, :n].sum(0), torch.full((4,), 0.25, dtype=torch.float64))
    full, steps = reference_sinkhorn(torch.exp(-cost / 0.1), torch.full((5, 6), 1 / 6, dtype=torch.float64),
                                     torch.full((5, 4), 0.25, dtype=torch.float64))
    ours, ours_steps = sinkhorn(cost, 1 / 6, 1 / 4, 0.1, stop_group_dims=1, return_iterations=True)
    torch.testing.assert_close(ours, full)
    assert int(ours_steps) == steps


def test_nan_falls_back_to_the_kernel_of_that_group_only():
    cost = _random_cost(2, 3, 4, 5, seed=9).float()
    cost[1, 2, 0] = 1e6  # a whole kernel row underflows to 0 -> r = inf -> NaN plan (official Q10/Q12)
    plan = sinkhorn(cost, 1 / 4, 1 / 5, 0.1, stop_group_dims=1)  # groups: cost[0] and cost[1], 3 problems each
    kernel = torch.exp(-cost / 0.1)
    assert torch.equal(plan[1], kernel[1])  # the whole call of the failing problem, as officially
    expected, _ = reference_sinkhorn(kernel[0], torch.full((3, 4), 0.25), torch.full((3, 5), 0.2))
    torch.testing.assert_close(plan[0], expected)
    assert not torch.equal(plan[0], kernel[0])


def test_log_domain_survives_small_eps_where_scaling_overflows():
    cost = _random_cost(3, 5, 6, seed=11)
    eps = 1e-3
    plain = sinkhorn(cost.float(), 1 / 5, 1 / 6, eps)
    assert torch.equal(plain, torch.exp(-cost.float() / eps))  # plain scaling broke down: kernel fallback
    plan = sinkhorn(cost, 1 / 5, 1 / 6, eps, log_domain=True, max_iter=20000, threshold=1e-12)
    torch.testing.assert_close(plan.sum(-1), torch.full((3, 5), 0.2, dtype=torch.float64), atol=1e-8, rtol=0)
    torch.testing.assert_close(plan.sum(-2), torch.full((3, 6), 1 / 6, dtype=torch.float64), atol=1e-12, rtol=0)


def test_plans_are_constants_unless_grad_is_asked_for():
    cost = _random_cost(2, 4, 5, seed=13).requires_grad_()
    assert not sinkhorn(cost, 1 / 4, 1 / 5, 0.1).requires_grad
    plan = sinkhorn(cost, 1 / 4, 1 / 5, 0.1, grad=True, threshold=0, max_iter=30)
    (plan * cost).sum().backward()
    ours = cost.grad.clone()

    def loss(c):
        return (sinkhorn(c, 1 / 4, 1 / 5, 0.1, grad=True, threshold=0, max_iter=30) * c).sum()

    expected = torch.autograd.functional.jacobian(loss, cost.detach())
    torch.testing.assert_close(ours, expected)
    assert torch.autograd.gradcheck(loss, (cost.detach()[:1].clone().requires_grad_(),))


def test_masked_gradients_stay_finite():
    cost = _random_cost(2, 4, 6, seed=17).requires_grad_()
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    for log_domain in (False, True):
        plan = sinkhorn(cost, 1 / 4, mask.double() / mask.sum(-1, keepdim=True), 0.1, col_mask=mask, grad=True,
                        log_domain=log_domain)
        (plan * cost).sum().backward()
        assert torch.isfinite(cost.grad).all()
        cost.grad = None
