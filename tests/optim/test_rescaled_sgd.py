"""`RescaledSGD`: exact steps on hand numbers, the minimum scale, state_dict round-trip, convergence, validation."""

from __future__ import annotations

import copy

import pytest
import torch

from adaptive_lr.optim import RescaledSGD


def param(*values: float) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def step_with(opt: RescaledSGD, grads: dict[torch.nn.Parameter, list[float]]) -> None:
    for p, g in grads.items():
        p.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()


def test_exact_steps_per_element_with_ema_and_bias_correction():
    p = param(1.0, 2.0)
    opt = RescaledSGD([p], lr=0.1, beta=0.5, eps=1e-12, min_scale=0.0)
    # step 1: a_hat = |g| = [1, 3]; raw = [1, 1/3], mean 2/3 -> scale [1.5, 0.5]: effective LR [0.15, 0.05]
    step_with(opt, {p: [1.0, 3.0]})
    assert opt.effective_lr(p).tolist() == pytest.approx([0.15, 0.05], rel=1e-9)
    assert p.tolist() == pytest.approx([0.85, 1.85], rel=1e-9)  # both move by 0.15: the step follows sign(g)
    # step 2: a = 0.5 [0.5, 1.5] + 0.5 [1, 1] = [0.75, 1.25], / (1 - 0.25) = [1, 5/3]; raw [1, 0.6], mean 0.8
    step_with(opt, {p: [1.0, 1.0]})
    assert opt.effective_lr(p).tolist() == pytest.approx([0.125, 0.075], rel=1e-9)
    assert p.tolist() == pytest.approx([0.725, 1.775], rel=1e-9)


def test_min_scale_keeps_a_fraction_of_sgd_and_the_mean_lr_stays_lr():
    p = param(1.0, 2.0)
    opt = RescaledSGD([p], lr=0.1, beta=0.0, eps=1e-12, min_scale=0.5)
    step_with(opt, {p: [1.0, 3.0]})
    # scale = 0.5 + 0.5 * [1.5, 0.5] = [1.25, 0.75]
    assert opt.effective_lr(p).tolist() == pytest.approx([0.125, 0.075], rel=1e-9)
    assert p.tolist() == pytest.approx([1.0 - 0.125, 2.0 - 0.225], rel=1e-9)

    g = torch.Generator().manual_seed(0)
    big = torch.nn.Parameter(torch.randn(1000, generator=g, dtype=torch.float64))
    opt = RescaledSGD([big], lr=0.01, beta=0.0, min_scale=0.2)
    big.grad = torch.randn(1000, generator=g, dtype=torch.float64) * torch.logspace(-4, 2, 1000, dtype=torch.float64)
    opt.step()
    eff = opt.effective_lr(big)
    assert eff.min().item() >= 0.2 * 0.01 and eff.min().item() < 0.2 * 0.01 * 1.01  # the floor is reached
    assert eff.mean().item() == pytest.approx(0.01, rel=1e-12)


def test_min_scale_one_is_plain_sgd_with_momentum_and_weight_decay():
    g = torch.Generator().manual_seed(1)
    a = torch.nn.Parameter(torch.randn(3, 4, generator=g))
    b = torch.nn.Parameter(a.detach().clone())
    ours = RescaledSGD([a], lr=0.05, min_scale=1.0, momentum=0.9, weight_decay=0.01)
    ref = torch.optim.SGD([b], lr=0.05, momentum=0.9, weight_decay=0.01)
    for _ in range(5):
        grad = torch.randn(3, 4, generator=g)
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        ref.step()
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


def test_per_tensor_scales_whole_tensors_by_their_mean_magnitude():
    w, v = param(1.0, 1.0, 1.0), param(1.0)
    opt = RescaledSGD([w, v], lr=0.1, beta=0.0, eps=1e-12, min_scale=0.0, per_tensor=True)
    # mean |g|: w 1, v 4 -> raw [1, 0.25] weighted by 3 and 1 elements: mean 3.25 / 4 -> scales 16/13, 4/13
    step_with(opt, {w: [1.0, -1.0, 1.0], v: [4.0]})
    assert opt.effective_lr(w).tolist() == pytest.approx([0.1 * 16 / 13] * 3, rel=1e-9)
    assert opt.effective_lr(v).tolist() == pytest.approx([0.1 * 4 / 13], rel=1e-9)
    assert torch.cat([opt.effective_lr(w), opt.effective_lr(v)]).mean().item() == pytest.approx(0.1, rel=1e-12)


def test_parameters_without_gradient_are_left_alone_and_not_counted():
    p, frozen = param(1.0, 2.0), param(5.0)
    opt = RescaledSGD([p, frozen], lr=0.1, beta=0.0, eps=1e-12, min_scale=0.0)
    step_with(opt, {p: [1.0, 3.0]})
    assert frozen.tolist() == [5.0] and frozen not in opt.state
    assert opt.effective_lr(p).tolist() == pytest.approx([0.15, 0.05], rel=1e-9)
    with pytest.raises(KeyError, match="no step"):
        opt.effective_lr(frozen)


def test_state_dict_round_trip_continues_identically():
    def make(values):
        p = torch.nn.Parameter(torch.tensor(values))
        return p, RescaledSGD([p], lr=0.05, beta=0.9, min_scale=0.1, momentum=0.5)

    grads = [torch.tensor([0.3 * (-1) ** k, 1.0 + k, -0.01 * k]) for k in range(8)]
    p, opt = make([1.0, 2.0, 3.0])
    for grad in grads[:4]:
        p.grad = grad.clone()
        opt.step()
    saved, saved_p = copy.deepcopy(opt.state_dict()), p.detach().clone()
    for grad in grads[4:]:
        p.grad = grad.clone()
        opt.step()

    q, resumed = make(saved_p.tolist())
    resumed.load_state_dict(saved)
    assert resumed.state[q]["step"] == 4
    for grad in grads[4:]:
        q.grad = grad.clone()
        resumed.step()
    assert torch.equal(q.detach(), p.detach())
    assert torch.equal(resumed.effective_lr(q), opt.effective_lr(p))


def least_squares(min_scale: float, steps: int = 300) -> tuple[float, torch.Tensor, float, torch.Tensor]:
    """Full-batch RescaledSGD (with a closure) on 64 noisy samples of a 5-d linear model; also the exact optimum."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0], dtype=torch.float64)
    y = y + 0.01 * torch.randn(64, generator=g, dtype=torch.float64)
    w = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    opt = RescaledSGD([w], lr=0.1, beta=0.9, min_scale=min_scale, momentum=0.5)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    w_opt = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)
    return float(closure().detach()), w.detach(), float(((x @ w_opt - y) ** 2).mean()), w_opt


def test_converges_on_a_small_least_squares_problem():
    loss, w, best_loss, w_opt = least_squares(min_scale=0.1)
    assert best_loss < loss < 1.001 * best_loss  # the noise floor, ~1e-4
    assert torch.allclose(w, w_opt, atol=1e-3)


def test_without_a_minimum_scale_converged_elements_starve_the_others():
    # an element whose gradient has vanished gets scale ~1/eps and, through the normalisation, every other
    # element ~0: pure 1/|g| rescaling stalls far from the optimum, which is what min_scale prevents
    loss, _, best_loss, _ = least_squares(min_scale=0.0)
    assert loss > 1e4 * best_loss


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"beta": 1.0}, "beta"),
        ({"eps": 0.0}, "eps"),
        ({"min_scale": 1.5}, "min_scale"),
        ({"min_scale": -0.1}, "min_scale"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"per_tensor": "yes"}, "per_tensor"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must") as info:
        RescaledSGD([param(1.0)], **kwargs)
    assert repr(kwargs[name]) in str(info.value)
