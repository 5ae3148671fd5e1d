"""The modules in other people's pipelines: torchvision / kornia composition,
input structures, repr, clamp, autograd on every backend, deepcopy of the
attention modules, per-worker random streams, the README example."""
import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from .conftest import HAS_CUDA, backend_params
from fastfreq import functional as FF
from fastfreq import reference as ref
from fastfreq.aps import AuxLabels, ExtendedChannelAttention, aux_loss
from fastfreq.philox import philox_normal
from fastfreq.transforms import NFD, PowerSuppression, SpectralAugment

ROOT = Path(__file__).resolve().parents[1]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _modules():
    return [PowerSuppression(p=0.5, generator=gen(1)), NFD(generator=gen(2)),
            SpectralAugment(ps_p=0.5, generator=gen(3))]


def test_modules_are_exported_at_the_top_level():
    import fastfreq
    from fastfreq import transforms

    for name in ("PowerSuppression", "NFD", "SpectralAugment", "batch_params"):
        assert getattr(fastfreq, name) is getattr(transforms, name) and name in fastfreq.__all__


# ------------------------------------------------------------------ composition
def test_torchvision_compose_and_sequential_return_tensors():
    T = pytest.importorskip("torchvision.transforms")
    x = torch.rand(3, 16, 16)
    for pipe in (T.Compose([T.RandomHorizontalFlip(), PowerSuppression(p=0.5), NFD()]),
                 nn.Sequential(PowerSuppression(p=0.5), NFD(), SpectralAugment())):
        out = pipe(x)
        assert type(out) is torch.Tensor and out.shape == x.shape


def test_kornia_sequential():
    K = pytest.importorskip("kornia.augmentation")
    x = torch.rand(4, 3, 16, 16)
    out = nn.Sequential(K.RandomHorizontalFlip(p=1.0), PowerSuppression(p=1.0, alpha=(1, 1)))(x)
    assert type(out) is torch.Tensor and out.shape == x.shape
    assert not torch.allclose(out, x.flip(-1), atol=1e-3)


@pytest.mark.parametrize("m", _modules(), ids=lambda m: type(m).__name__)
def test_structures_come_back_as_given(m):
    img = torch.rand(3, 12, 12)
    out, label = m((img, 7))
    assert label == 7 and out.shape == img.shape
    out_l = m([img, torch.tensor(2)])
    assert isinstance(out_l, list) and out_l[1].item() == 2
    d = m({"image": img, "label": torch.tensor(5), "name": "a"})
    assert d["name"] == "a" and d["label"].item() == 5 and d["image"].shape == img.shape
    # the kept parameters replay the tensor inside a structure exactly
    again = m(img, params=m.last_params)
    assert torch.equal(again, d["image"])


def test_dataloader_collates_a_transform_last_into_a_tensor():
    aug = SpectralAugment(ps_p=0.5)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return aug((torch.rand(3, 8, 8), i))

    x, y = next(iter(torch.utils.data.DataLoader(DS(), batch_size=4)))
    assert type(x) is torch.Tensor and x.shape == (4, 3, 8, 8) and y.tolist() == [0, 1, 2, 3]


def test_uint8_and_tv_tensor_images():
    tv_tensors = pytest.importorskip("torchvision.tv_tensors")
    u8 = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8, generator=gen())
    m = PowerSuppression(p=1.0, generator=gen(4))
    out = m(u8)
    assert out.dtype == torch.uint8 and out.shape == u8.shape
    want = m(u8.float() / 255, params=m.last_params).mul(255).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(out, want)
    img = tv_tensors.Image(u8[0])
    out, label = m(img, 3)
    assert isinstance(out, tv_tensors.Image) and out.dtype == torch.uint8 and label == 3
    with pytest.raises(TypeError, match="x: expected floating-point or uint8"):
        m(torch.zeros(1, 3, 8, 8, dtype=torch.int32))


def test_torchvision_v2_adapter():
    pytest.importorskip("torchvision")
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from fastfreq.tv import V2

    img = tv_tensors.Image(torch.randint(0, 256, (3, 20, 20), dtype=torch.uint8, generator=gen()))
    mask = tv_tensors.Mask(torch.zeros(20, 20, dtype=torch.uint8))
    ps = PowerSuppression(p=1.0, alpha=(1, 1), generator=gen(5))
    pipe = v2.Compose([v2.RandomHorizontalFlip(p=0.0), V2(ps), V2(NFD(generator=gen(6)))])
    out, out_mask, label = pipe(img, mask, 4)
    assert isinstance(out, tv_tensors.Image) and out.dtype == torch.uint8
    assert out_mask is mask and label == 4
    assert not torch.equal(out, img)
    with pytest.raises(TypeError, match="module: expected a fastfreq augmentation"):
        V2(nn.Identity())


def test_torchvision_v2_adapter_on_pil_images():
    """torchvision datasets yield PIL images: V2 augments them (and gives PIL
    back, as torchvision's v2 transforms do), instead of passing them by."""
    pytest.importorskip("torchvision")
    from PIL import Image
    from torchvision.transforms import v2

    from fastfreq.tv import V2

    arr = torch.randint(0, 256, (20, 24, 3), dtype=torch.uint8, generator=gen(11))
    pil = Image.fromarray(arr.numpy(), "RGB")
    aug = SpectralAugment(ps_p=1.0, alpha=(1, 1), generator=gen(12))
    out = V2(aug)(pil)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == pil.size
    # the same draw on the uint8 tensor of the image, computed by the module itself
    want = aug(arr.permute(2, 0, 1), params=aug.last_params)
    got = torch.from_numpy(np.array(out)).permute(2, 0, 1)
    assert torch.equal(got, want) and not torch.equal(got, arr.permute(2, 0, 1))
    # in a pipeline that ends in ToImage, with a label beside the image
    img, label = v2.Compose([V2(aug), v2.ToImage()])(pil, 3)
    assert label == 3 and img.dtype == torch.uint8 and not torch.equal(img, arr.permute(2, 0, 1))
    gray = V2(PowerSuppression(p=1.0, alpha=(1, 1), generator=gen(13)))(pil.convert("L"))
    assert gray.mode == "L" and gray.tobytes() != pil.convert("L").tobytes()
    with pytest.raises(TypeError, match=r"mode 'L' or 'RGB', got mode 'P'.*convert"):
        V2(aug)(pil.convert("P"))


def test_repr_names_every_setting():
    r = repr(PowerSuppression(p=0.2, alpha=(0.1, 0.9), bands=("L", "H"), radius_scale=2.0))
    for part in ("p=0.2", "alpha=(0.1, 0.9)", "bands=('L', 'H')", "radius_scale=2.0",
                 "same_on_batch=False", "backend='auto'", "clamp=False"):
        assert part in r, r
    r = repr(NFD(sigma=0.5, p=0.3, bands="equal-coverage", clamp=True))
    for part in ("sigma=0.5", "p=0.3", "bands='equal-coverage'", "clamp=(0.0, 1.0)"):
        assert part in r, r


def test_clamp():
    x = torch.rand(4, 3, 16, 16)
    loose = NFD(sigma=4.0, generator=gen(7))(x)
    assert loose.min() < 0 or loose.max() > 1
    tight = NFD(sigma=4.0, generator=gen(7), clamp=True)(x)
    assert torch.equal(tight, loose.clamp(0, 1))
    assert NFD(sigma=4.0, generator=gen(7), clamp=(0.2, 0.8))(x).min() >= 0.2
    with pytest.raises(ValueError, match="clamp: expected lo < hi"):
        NFD(clamp=(1, 0))


# ------------------------------------------------------------------ autograd
_GRAD_CASES = {
    "ps": lambda B: dict(band=torch.tensor([0, 2])[:B], alpha=torch.tensor([0.3, 0.8])[:B]),
    "nfd": lambda B: dict(alpha_r=torch.rand(B, 5, generator=gen(8)), seed=11, sigma=0.7),
    "both": lambda B: dict(band=torch.tensor([1, 2])[:B], alpha=torch.tensor([0.6, 0.2])[:B],
                           alpha_r=torch.rand(B, 5, generator=gen(9)), seed=12, sigma=1.3),
}


def _on(kw, device, dtype):
    return {k: (v.to(device, dtype) if isinstance(v, torch.Tensor) and v.is_floating_point()
                else v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}


def _reference_vjp(x, g, kw):
    """``J^T g`` of fastfreq.reference's forward by central differences
    (Richardson-extrapolated, steps 1e-4 and 5e-5, float64): no backward code
    of any backend and no torch. Planes are independent, so the 2 x 2 x H W
    perturbed images of every plane go through the reference as one batch, with
    the backends' Philox normals for the seed as explicit noise."""
    B, C, H, W = x.shape
    n = H * W
    steps = (1e-4, 5e-5)
    eye = np.eye(n).reshape(n, 1, 1, H, W)
    xs = np.stack([x[None] + s * h * eye for h in steps for s in (1, -1)]).reshape(-1, C, H, W)

    def tiled(v):
        return None if v is None else np.tile(v.numpy(), (4 * n,) + (1,) * (v.dim() - 1))

    noise = None
    if "alpha_r" in kw:
        noise = philox_normal(torch.tensor([kw["seed"]]), (B, C, H, W // 2 + 1)).double()
    out = ref.spectral_augment(xs, tiled(kw.get("band")), tiled(kw.get("alpha")),
                               tiled(kw.get("alpha_r")), tiled(noise),
                               kw.get("sigma", 1.0)).reshape(2, 2, n, B, C, H, W)
    d1, d2 = ((o[0] - o[1]) / (2 * h) for o, h in zip(out, steps))
    dout_dx = (4 * d2 - d1) / 3  # (pixel, B, C, H, W)
    return torch.from_numpy(np.einsum("pbchw,bchw->bcp", dout_dx, g.numpy()).reshape(x.shape))


def _own_directional_error(backend, x, g, got, kw, extra, h):
    """Worst of two random directions v of |<g, (f(x+hv) - f(x-hv)) / 2h> -
    <got, v>| / (|got| |v|) for the backend's own forward f (Richardson over h
    and h/2): the backward against the forward it belongs to (an NFD backward
    that recomputes other noise than the forward drew is 5e-2 off here)."""
    def f(t):
        with torch.no_grad():
            return FF.spectral_augment(t.to(x.dtype), backend=backend, **kw, **extra).double()

    errs = []
    for s in range(2):
        v = torch.randn(x.shape, dtype=torch.float64, generator=gen(30 + s)).to(x.device)
        x64 = x.detach().double()
        d1, d2 = (float(((f(x64 + t * v) - f(x64 - t * v)) / (2 * t) * g.double()).sum())
                  for t in (h, h / 2))
        fd = (4 * d2 - d1) / 3
        errs.append(abs(fd - float((got.double() * v).sum())) / float(got.double().norm() * v.norm()))
    return max(errs)


# MEASURED on CPU (this machine, torch 2.x, Triton under its interpreter):
# the worst error over the three cases of each backend's vector-Jacobian
# product, (against the reference's differences, relative to its largest
# entry; against its own forward's, _own_directional_error). float64 backends
# in float64, Triton in float32 at "ieee" (its backward computes in float32).
# cpp's own error is the kernels' polynomial normals against fastfreq.philox's
# libm ones that the backward recomputes with (NOISE_DRAW_BOUND). Tolerances are
# 4x these; the GPU backends (not measured) take their CPU counterpart's.
GRAD_MEASURED = {"numpy": (1.35e-11, 2.06e-12), "torch": (1.35e-11, 4.00e-12),
                 "cpp": (1.35e-11, 5.32e-9), "triton": (3.09e-6, 1.38e-5),
                 "single_pass": (1.35e-11, 5.30e-9)}
GRAD_TOLERANCE = {name: tuple(4 * e for e in errs) for name, errs in GRAD_MEASURED.items()}
GRAD_TOLERANCE["cuda"] = GRAD_TOLERANCE["cpp"]


@pytest.mark.parametrize("case", list(_GRAD_CASES))
@pytest.mark.parametrize("bd", backend_params())
def test_gradient_matches_finite_differences(bd, case):
    """Every backend's gradient (its registered backward: the suppression
    op applied to the gradient, or nfd_vjp recomputing with eager torch)
    against two computations that share none of its backward code: central
    differences of the NumPy reference, and of the backend's own forward (the
    backward must belong to the forward's noise: Triton < 3.4 drew other noise
    than the backward recomputed). Triton runs float32 at "ieee" (compiled on a
    GPU, under the interpreter on CPU)."""
    backend, device = bd
    dtype = torch.float32 if backend == "triton" else torch.float64
    kw = _GRAD_CASES[case](2)
    x = torch.rand(2, 3, 6, 5, dtype=torch.float64, generator=gen(20))
    g = torch.randn(2, 3, 6, 5, dtype=torch.float64, generator=gen(21))
    want = _reference_vjp(x.numpy(), g, kw)
    extra = {"precision": "ieee"} if backend == "triton" else {}
    kw_b = _on(kw, device, dtype)
    xb = x.to(device, dtype).requires_grad_(True)
    (got,) = torch.autograd.grad(FF.spectral_augment(xb, backend=backend, **kw_b, **extra), xb,
                                 g.to(device, dtype))
    err_ref = float((got.double().cpu() - want).abs().max() / want.abs().max())
    err_own = _own_directional_error(backend, xb, g.to(device), got, kw_b, extra,
                                     1e-3 if dtype == torch.float32 else 1e-5)
    tol_ref, tol_own = GRAD_TOLERANCE[backend]
    assert err_ref <= tol_ref, f"against the reference: {err_ref:.3g} > {tol_ref:.3g}"
    assert err_own <= tol_own, f"against its own forward: {err_own:.3g} > {tol_own:.3g}"
    assert got.abs().sum() > 0


def test_module_backward_on_the_default_backend():
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    SpectralAugment(ps_p=1.0, generator=gen(10))(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.skipif(not FF.ext.available(), reason="fastfreq._C not built")
@pytest.mark.parametrize("case", list(_GRAD_CASES))
def test_opcheck_with_autograd(case):
    kw = _on(_GRAD_CASES[case](2), "cpu", torch.float64)
    x = torch.rand(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    seed = torch.tensor([kw["seed"]]) if "seed" in kw else None
    edges = [float(v) for pair in FF.PAPER_BANDS for v in pair]
    args = (x, kw.get("band"), kw.get("alpha"), kw.get("alpha_r"), None, seed, edges,
            float(kw.get("sigma", 1.0)), 1.0)
    torch.library.opcheck(torch.ops.fastfreq.spectral_augment.default, args)
    from fastfreq.backends import triton_kernel
    if triton_kernel.available() and (HAS_CUDA or triton_kernel.interpreted()):
        args32 = tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                       for a in args)
        args32[0].requires_grad_(True)
        torch.library.opcheck(torch.ops.fastfreq.spectral_augment_triton.default,
                              args32 + ("ieee",))


# ------------------------------------------------------------------ attention modules
def test_attention_deepcopy_and_averaged_model_after_a_step():
    att = ExtendedChannelAttention(8, hidden=16)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), att, nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 2))
    labels = AuxLabels("learnable")
    x = torch.rand(4, 3, 8, 8)
    loss = model(x).sum() + aux_loss(att.open_ratio, labels(torch.tensor([0, 1, 2, 0]),
                                                            torch.rand(4)), torch.ones(4, dtype=torch.bool))
    loss.backward()
    twin = copy.deepcopy(model)
    avg = torch.optim.swa_utils.AveragedModel(model)
    avg.update_parameters(model)
    assert twin[1].mask is None and att.mask is not None  # the original keeps its last mask
    assert torch.equal(twin(x), model(x))


# ------------------------------------------------------------------ DataLoader workers
class _SameImage(torch.utils.data.Dataset):
    def __init__(self, aug):
        self.aug, self.img = aug, torch.rand(3, 8, 8, generator=gen(1))

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.aug(self.img), torch.utils.data.get_worker_info().id


def _worker_draws(seed):
    ds = _SameImage(SpectralAugment(ps_p=1.0, generator=gen(42)))
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2,
                                     generator=torch.Generator().manual_seed(seed))
    return [(x, wid) for x, wid in dl]


def test_workers_draw_distinct_reproducible_streams():
    a = _worker_draws(0)
    by_worker = {wid: x for x, wid in a}
    assert set(by_worker) == {0, 1}
    assert not torch.equal(by_worker[0], by_worker[1])      # not the same draw in each worker
    b = _worker_draws(0)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b))   # seeded loader: reproducible
    c = _worker_draws(1)
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(a, c))  # another epoch / seed


class _PerImage(torch.utils.data.Dataset):
    """Augments one image per item in the workers and returns its draw."""

    def __init__(self):
        self.aug = SpectralAugment(ps_p=0.5, generator=gen(21))
        self.images = torch.rand(8, 3, 12, 12, generator=gen(22))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.aug(self.images[i]), i, self.aug.last_params


def test_worker_side_draws_collate_to_what_aux_labels_take():
    from fastfreq.transforms import batch_params

    ds = _PerImage()
    x, idx, collated = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)))
    assert collated["ps"]["band"].shape == (8, 1)  # what default_collate makes of (1,) draws
    with pytest.raises(ValueError, match="expected two \\(B,\\) tensors"):
        AuxLabels("learnable")(collated["ps"]["band"], collated["ps"]["alpha"])
    p = batch_params(collated)
    ps, nf = p["ps"], p["nfd"]
    assert ps["band"].shape == ps["alpha"].shape == ps["applied"].shape == (8,)
    assert nf["alpha_r"].shape == (8, 5) and nf["seed"].shape == (8,)
    beta = AuxLabels("learnable")(ps["band"], ps["alpha"])
    att_ratio = torch.full((8,), 0.5)
    assert torch.isfinite(aux_loss(att_ratio, beta, ps["applied"]))
    # entry i is image i's own draw: replaying it on that image gives the worker's output
    for i in range(8):
        one = {"ps": {k: v[i:i + 1] for k, v in ps.items()},
               "nfd": {k: v[i:i + 1] for k, v in nf.items()}}
        torch.testing.assert_close(ds.aug(ds.images[idx[i]], params=one), x[i])
    with pytest.raises(ValueError, match=r"collated\['band'\]: expected a \(B, 1, ...\) tensor"):
        batch_params({"band": torch.zeros(8, dtype=torch.int64)})


# ------------------------------------------------------------------ README
def test_readme_training_examples_run(monkeypatch, request):
    """The three examples of "Using it in a training loop", in order, in one
    scope (each continues the one before): the batch loop, the worker-side
    loop and the compiled step. The compiled step runs with the aot_eager
    backend here (Dynamo's capture, where a graph break shows; Inductor's
    code generation takes minutes on a 2-core machine, tests/test_compile.py
    runs it once), with fullgraph=True as written."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Using it in a training loop", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda *a, **kw: compile_(*a, **{**kw, "backend": "aot_eager"}))
    torch._dynamo.reset()
    request.addfinalizer(torch._dynamo.reset)  # nothing compiled here outlives the test
    scope: dict = {}
    losses = []
    # the README sets trace_autograd_ops itself; Dynamo's own patch restores it
    # (monkeypatch's undo deletes the attribute, which a torch config module
    # then hides: tests/test_compile.py run after this test once failed with
    # "trace_autograd_ops does not exist")
    with torch._dynamo.config.patch(trace_autograd_ops=False):
        for code in blocks:
            exec(compile(code, "README.md", "exec"), scope)
            losses.append(scope["loss"])
    assert all(torch.isfinite(v) for v in losses)
    # the worker-side loop did label its batch: (B,) params from two workers
    assert scope["ps"]["band"].shape == (32,) and scope["x"].shape == (32, 3, 40, 40)
