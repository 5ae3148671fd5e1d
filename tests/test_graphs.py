"""The captured training step (train/graphs.py, ``--cuda-graphs``): on CPU its
body runs eagerly and must train exactly as the ordinary step does; on a GPU
the captured replays must match eager training for the same seeds."""
import pytest
import torch

from train import engine
from train.presets import get_preset


def config(**kw):
    # demo: APS (extended attention, learnable labels) + PS + NFD; 6 batches of
    # 32 with a partial last one
    base = dict(epochs=2, n_train=176, n_test=16, batch_size=32, device="cpu")
    base.update(kw)
    return get_preset("demo", **base)


def train(cfg, tmp_path, name):
    t = engine.Trainer(cfg, str(tmp_path / name), progress=False)
    try:
        history = t.fit()
    finally:
        t.lock.release()
    return t, history


def test_captured_step_trains_as_the_ordinary_step_on_cpu(tmp_path):
    """The step's body (gather, pad, augment from the registered generator,
    crop, flip, normalise, APS loss, backward, update) run eagerly: the same
    training as the loader + train_step path, bit for bit."""
    plain, h0 = train(config(), tmp_path, "plain")
    graphed, h1 = train(config(cuda_graphs=True), tmp_path, "graphed")
    assert graphed.captured is not None and graphed.captured.graph is None  # eager on CPU
    assert len(h0) == len(h1) == 2
    for a, b in zip(h0, h1):
        for key in ("images", "loss", "aux", "train_acc", "lr"):
            assert a[key] == b[key], key
    for (name, p), q in zip(plain.net.named_parameters(), graphed.net.parameters()):
        assert torch.equal(p, q), name
    # the schedule's rate reached the device tensor the replays read
    assert graphed.captured.lr.item() == pytest.approx(h1[-1]["lr"])


def test_sgd_update_is_torch_sgd():
    torch.manual_seed(0)
    w = [torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    v = [t.detach().clone().requires_grad_(True) for t in w]
    opt = torch.optim.SGD(v, lr=0.05, momentum=0.9, weight_decay=5e-4)

    class Fake:  # what CapturedStep reads of a trainer
        pass

    from train.graphs import CapturedStep

    step = CapturedStep.__new__(CapturedStep)
    step.t = Fake()
    step.t.opt = torch.optim.SGD(w, lr=0.05, momentum=0.9, weight_decay=5e-4)
    step.params, step.lr, step.use_graph = w, torch.tensor(0.05), True  # the device-lr formula
    for i in range(4):
        g = [torch.randn_like(t) for t in w]
        for t, gi in zip(w, g):
            t.grad = gi.clone()
        for t, gi in zip(v, g):
            t.grad = gi.clone()
        step.sgd_update()
        opt.step()
        for a, b in zip(w, v):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-7), i


def test_captured_step_refuses_ddp_and_compile(tmp_path):
    with pytest.raises(ValueError, match="--compile or --cuda-graphs"):
        train(config(cuda_graphs=True, compile=True, epochs=1), tmp_path, "both")


@pytest.mark.gpu
def test_captured_step_replays_match_eager_on_a_gpu(tmp_path):
    kw = dict(device="cuda", n_train=352, batch_size=32, epochs=2)
    plain, h0 = train(config(**kw), tmp_path, "plain")
    graphed, h1 = train(config(cuda_graphs=True, **kw), tmp_path, "graphed")
    assert graphed.captured.graph is not None  # it was captured and replayed
    for a, b in zip(h0, h1):
        for key in ("loss", "aux", "train_acc"):
            assert a[key] == pytest.approx(b[key], rel=2e-3, abs=1e-3), key
    for (name, p), q in zip(plain.net.named_parameters(), graphed.net.parameters()):
        assert torch.allclose(p, q, rtol=1e-2, atol=1e-3), name
