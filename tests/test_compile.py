"""torch.compile(fullgraph=True) of whole training steps on CPU: an
augmentation module (or the functional API with its defaults), a model with
ExtendedChannelAttention, AuxLabels, aux_loss, backward and the parameter
update, in ONE graph. Each compiled step is compared with the same step run
eagerly on an identical copy, replaying the draws the compiled step made.

Notes on what torch itself needs: ``loss.backward()`` inside a compiled
function needs ``torch._dynamo.config.trace_autograd_ops``; torch.optim's
``step()`` graph-breaks by design (its ``_use_grad`` wrapper), so the
fullgraph step updates the parameters by hand (plain SGD). The default tests
use the ``aot_eager`` backend (Dynamo capture + AOT autograd: where a graph
break shows; about 5 s a case); one slow test runs Inductor."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastfreq
from fastfreq.aps import AuxLabels, ExtendedChannelAttention, aux_loss
from fastfreq.transforms import NFD, PowerSuppression, SpectralAugment, sample_control_weights

LR = 0.1


def _net():
    torch.manual_seed(0)
    att = ExtendedChannelAttention(8, hidden=16)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), att,
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    labels = AuxLabels("learnable")
    return model, att, labels


# how each case augments a batch: (x, replay) -> (augmented, PS params, draws to replay)
def _module_case(name):
    if name == "PowerSuppression":
        ps = PowerSuppression(p=0.5)

        def augment(x, replay):
            out = ps(x, params=replay)
            return out, ps.last_params, ps.last_params
    elif name == "NFD":
        ps, nfd = PowerSuppression(p=0.5), NFD(sigma=0.5)

        def augment(x, replay):
            out = nfd(ps(x, params=None if replay is None else replay[0]),
                      params=None if replay is None else replay[1])
            return out, ps.last_params, (ps.last_params, nfd.last_params)
    else:
        sa = SpectralAugment(ps_p=0.5)

        def augment(x, replay):
            out = sa(x, params=replay)
            return out, sa.last_params["ps"], sa.last_params
    return augment


def _functional_case():
    def augment(x, replay):
        B = x.shape[0]
        if replay is None:  # drawn inside the compiled step
            band = torch.randint(0, 3, (B,))
            alpha = torch.rand(B)
            alpha_r = sample_control_weights(B, 5)
            seed = torch.randint(-2 ** 62, 2 ** 62, (1,))
        else:
            band, alpha, alpha_r, seed = replay
        # the functional API with its defaults (check_values=True); seed only
        # so that the eager run can replay the draw
        out = fastfreq.spectral_augment(x, band, alpha, alpha_r, seed=seed)
        ps = {"band": band, "alpha": alpha, "applied": torch.ones(B, dtype=torch.bool)}
        return out, ps, (band, alpha, alpha_r, seed)
    return augment


def _step_fn(augment, model, att, labels):
    params = [*model.parameters(), *labels.parameters()]

    def step(x, y, replay=None):
        xa, ps, draws = augment(x, replay)
        logits = model(xa)
        beta = labels(ps["band"], ps["alpha"])
        loss = F.cross_entropy(logits, y) + aux_loss(att.take_open_ratio(), beta, ps["applied"],
                                                     lam=100)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-LR)
                p.grad = None
        return loss.detach(), xa.detach(), draws
    return step


CASES = ["PowerSuppression", "NFD", "SpectralAugment", "functional"]


def _check_case(case, backend):
    x = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([1, 2, 3, 4])
    augment = _functional_case() if case == "functional" else _module_case(case)
    model, att, labels = _net()
    step = torch.compile(_step_fn(augment, model, att, labels), fullgraph=True, backend=backend)
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        loss, xa, draws = step(x, y)
    # the same step eagerly on an identical copy, with the compiled step's draws
    model2, att2, labels2 = _net()
    augment2 = _functional_case() if case == "functional" else _module_case(case)
    loss2, xa2, _ = _step_fn(augment2, model2, att2, labels2)(x, y, draws)
    assert torch.isfinite(loss)
    torch.testing.assert_close(xa, xa2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, loss2, rtol=1e-5, atol=1e-5)
    # the updates agree to a fraction of their size (Inductor reorders the
    # float sums of the backward; aot_eager keeps eager's order)
    start = [*_net()[0].parameters(), *_net()[2].parameters()]
    for (name, p), p2, p0 in zip([*model.named_parameters(), *labels.named_parameters()],
                                 [*model2.parameters(), *labels2.parameters()], start):
        d, d2 = (p - p0).detach(), (p2 - p0).detach()
        tol = 1e-6 + (1e-4 if backend == "aot_eager" else 1e-2) * d2.abs().max().item()
        assert (d - d2).abs().max().item() <= tol, f"{name}: {(d - d2).abs().max().item():.3g} > {tol:.3g}"
    # the step did train: the first conv moved away from its initial weights
    assert not torch.equal(model[0].weight, _net()[0][0].weight)


@pytest.mark.parametrize("case", CASES)
def test_whole_training_step_compiles_in_one_graph(case):
    torch._dynamo.reset()
    _check_case(case, "aot_eager")


@pytest.mark.slow
@pytest.mark.xfail(reason="open: under Inductor (torch 2.14.1, CPU) the attention's fc1 update "
                   "differs from the eager replay (0.095 against an update of 0.009) while the "
                   "loss and the augmented images agree; aot_eager agrees. Not yet explained")
def test_whole_training_step_with_inductor():
    torch._dynamo.reset()
    _check_case("SpectralAugment", "inductor")


def test_functional_value_checks_inside_compile_are_in_graph_asserts():
    """check_values=True (the default) compiles without a graph break and
    still refuses bad values when the compiled call runs (on CPU)."""
    torch._dynamo.reset()
    f = torch.compile(lambda x, band, alpha, alpha_r: fastfreq.spectral_augment(
        x, band, alpha, alpha_r), fullgraph=True, backend="aot_eager")
    x = torch.rand(2, 3, 8, 8)
    band, alpha, alpha_r = torch.tensor([0, 2]), torch.tensor([0.3, 0.9]), torch.rand(2, 5)
    assert f(x, band, alpha, alpha_r).shape == x.shape
    with pytest.raises(RuntimeError, match="alpha: expected finite values in"):
        f(x, band, torch.tensor([0.3, 1.5]), alpha_r)
    with pytest.raises(RuntimeError, match="band: expected"):
        f(x, torch.tensor([0, 3]), alpha, alpha_r)
    with pytest.raises(RuntimeError, match="x: expected finite values"):
        f(x.clone().index_fill_(0, torch.tensor([1]), float("inf")), band, alpha, alpha_r)


def test_aux_labels_inside_compile_give_nan_for_bad_values():
    torch._dynamo.reset()
    labels = AuxLabels("LMH=011")
    f = torch.compile(labels, fullgraph=True, backend="aot_eager")
    beta = f(torch.tensor([0, 1, 3]), torch.tensor([0.5, 0.5, 0.5]))
    assert torch.isfinite(beta[:2]).all() and beta[2].isnan()
    torch.testing.assert_close(beta[:2], labels(torch.tensor([0, 1]), torch.tensor([0.5, 0.5])))
