"""Data for training and robustness evaluation (paper Section 4).

* CIFAR-10 in the standard ``cifar-10-batches-py`` pickle layout (no MD5 check,
  so re-encoded copies load).
* CIFAR-10-C in its standard layout (``<corruption>.npy`` of shape
  ``(5N, 32, 32, 3)`` uint8, severities 1..5 stacked, and ``labels.npy``).
* An embedded synthetic 10-class dataset (no download) whose classes differ
  in structure across several frequency bands, plus its corrupted test set
  written in the CIFAR-10-C layout so evaluation runs the same code.
* ``DeviceLoader``: the whole split as one tensor on the device, shuffled per
  epoch with a seeded generator, augmented there batch by batch.
"""
from __future__ import annotations

import math
import numbers
import os
import pickle

import numpy as np
import torch

from fastfreq.corruptions import CORRUPTIONS, corrupt

from .files import atomic_write, exclusive

BENCHMARK_15 = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
                "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
                "elastic_transform", "pixelate", "jpeg_compression")
EXTRA_4 = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_19 = BENCHMARK_15 + EXTRA_4
CORRUPTION_SETS = {"15": BENCHMARK_15, "extra": EXTRA_4, "19": ALL_19,
                   "builtin": tuple(c for c in ALL_19 if c in CORRUPTIONS)}
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
WHERE_FROM = ("CIFAR-10 comes from torchvision's download (--download, needs torchvision and "
              "a network) or any copy in the cifar-10-batches-py layout")
WHERE_FROM_C = ("CIFAR-10-C is Hendrycks & Dietterich's benchmark (zenodo record 2535967: "
                "CIFAR-10-C.tar, one <corruption>.npy per corruption and labels.npy)")


class DataError(ValueError):
    """A dataset file is missing or not in the expected layout."""


# ---------------------------------------------------------------- CIFAR-10
def _batch_dir(root: str) -> str:
    for cand in (os.path.join(root, "cifar-10-batches-py"), root):
        if os.path.exists(os.path.join(cand, "test_batch")):
            return cand
    raise DataError(f"root: no CIFAR-10 at {root!r}: expected {root}/cifar-10-batches-py/"
                    f"{{data_batch_1..5,test_batch}} (pickled dicts with 'data' uint8 (N, 3072) and "
                    f"'labels'). {WHERE_FROM}")


def check_labels(labels: np.ndarray, n_images: int, path: str, n_classes: int = 10) -> np.ndarray:
    """Integer class ids in [0, n_classes), one per image, at least one image."""
    if n_images == 0:
        raise DataError(f"{path}: holds 0 images")
    if labels.shape != (n_images,):
        raise DataError(f"{path}: expected {n_images} labels (one per image), got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{path}: expected integer class labels, got {labels.dtype}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(f"{path}: expected labels in 0..{n_classes - 1}, got values from "
                        f"{labels.min()} to {labels.max()}")
    return labels.astype(np.int64)


def _read_batch(path: str):
    if not os.path.exists(path):
        raise DataError(f"{path}: missing; expected the cifar-10-batches-py layout. {WHERE_FROM}")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="latin1")
    except Exception as exc:  # truncated or not a pickle
        raise DataError(f"{path}: not a readable CIFAR-10 batch ({type(exc).__name__}: "
                        f"{str(exc)[:120]}). {WHERE_FROM}") from None
    if not isinstance(d, dict) or "data" not in d:
        raise DataError(f"{path}: expected a pickled dict with 'data' and 'labels', got "
                        f"{type(d).__name__}{' with keys ' + str(sorted(d)[:5]) if isinstance(d, dict) else ''}")
    if "labels" not in d and "fine_labels" not in d:
        raise DataError(f"{path}: no 'labels' entry (keys: {', '.join(map(str, sorted(d)))})")
    data = np.asarray(d["data"])
    labels = np.asarray(d.get("labels", d.get("fine_labels")))
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    return data.reshape(-1, 3, 32, 32), check_labels(labels, data.shape[0], path)


def load_cifar10(root: str, split: str = "train", download: bool = False):
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` of a split."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    if download and not any(os.path.exists(os.path.join(p, "test_batch"))
                            for p in (root, os.path.join(root, "cifar-10-batches-py"))):
        try:
            import torchvision
        except Exception as exc:  # missing, or built for another torch (a RuntimeError)
            from fastfreq.tv import TORCHVISION_HINT

            raise DataError(f"download: needs torchvision ({type(exc).__name__}: {exc}); "
                            f"{TORCHVISION_HINT}. {WHERE_FROM}") from None
        try:
            torchvision.datasets.CIFAR10(root, download=True)
        except OSError as exc:  # offline: urllib's URLError, a refused or reset connection
            raise DataError(f"download: could not fetch CIFAR-10 from "
                            f"{torchvision.datasets.CIFAR10.url} ({exc}); without a network, put "
                            f"a copy in the cifar-10-batches-py layout under {root} (the archive "
                            f"cifar-10-python.tar.gz unpacked) and drop --download") from None
    d = _batch_dir(root)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    parts = [_read_batch(os.path.join(d, n)) for n in names]
    return (torch.from_numpy(np.concatenate([p[0] for p in parts])),
            torch.from_numpy(np.concatenate([p[1] for p in parts])))


# ---------------------------------------------------------------- CIFAR-10-C
class CIFAR10C:
    """A CIFAR-10-C folder: ``<corruption>.npy`` (5N, 32, 32, 3) uint8 with
    severities 1..5 stacked, and ``labels.npy`` (5N,). N need not be 10,000."""

    def __init__(self, root: str):
        self.root = root
        path = os.path.join(root, "labels.npy")
        if not os.path.exists(path):
            raise DataError(f"{path}: missing; expected a CIFAR-10-C folder with labels.npy and "
                            f"<corruption>.npy files. {WHERE_FROM_C}")
        labels = _load_npy(path)
        if labels.ndim != 1 or len(labels) % 5:
            raise DataError(f"{path}: expected shape (5N,) with severities 1..5 stacked, got {labels.shape}")
        self.labels = check_labels(labels, len(labels), path)
        self.n = len(labels) // 5

    def available(self, names=ALL_19):
        return tuple(n for n in names if os.path.exists(os.path.join(self.root, f"{n}.npy")))

    def load(self, name: str) -> np.ndarray:
        if name not in ALL_19:
            raise ValueError(f"name: unknown corruption {name!r}; valid: {', '.join(ALL_19)}")
        path = os.path.join(self.root, f"{name}.npy")
        if not os.path.exists(path):
            raise DataError(f"{path}: missing. {WHERE_FROM_C}")
        arr = _load_npy(path, mmap_mode="r")
        if arr.shape != (5 * self.n, 32, 32, 3) or arr.dtype != np.uint8:
            raise DataError(f"{path}: expected uint8 of shape ({5 * self.n}, 32, 32, 3) to match "
                            f"labels.npy, got {arr.dtype} {arr.shape}")
        return arr

    def severity(self, name: str, severity: int):
        """``(images uint8 (N, 3, 32, 32), labels (N,))`` of one corruption and severity."""
        if isinstance(severity, bool) or not isinstance(severity, numbers.Integral) \
                or not 1 <= severity <= 5:
            raise ValueError(f"severity: expected an int in 1..5, got {severity!r}")
        lo, hi = (severity - 1) * self.n, severity * self.n
        imgs = torch.from_numpy(np.array(self.load(name)[lo:hi])).permute(0, 3, 1, 2)
        return imgs.contiguous(), torch.from_numpy(self.labels[lo:hi])

    def iterate(self, names=ALL_19, severities=range(1, 6)):
        """Yield ``(name, severity, images, labels)``."""
        for name in names:
            for s in severities:
                yield (name, s, *self.severity(name, s))


def _load_npy(path: str, mmap_mode=None) -> np.ndarray:
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except Exception as exc:  # truncated, not .npy, pickled objects
        raise DataError(f"{path}: not a readable .npy array ({type(exc).__name__}: "
                        f"{str(exc)[:120]}). {WHERE_FROM_C}") from None


# ---------------------------------------------------------------- synthetic data
N_CLASSES = 10
# cycles per image of the three component bands
_BANDS = ((1.5, 3.0), (5.0, 8.0), (10.0, 14.0))


def _class_signatures(seed: int = 2024):
    """Per class and band: an orientation and a frequency, plus a colour tint."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(N_CLASSES, 3, generator=g) * math.pi
    freq = torch.stack([lo + (hi - lo) * torch.rand(N_CLASSES, generator=g) for lo, hi in _BANDS], 1)
    tint = 0.5 + 0.5 * torch.rand(N_CLASSES, 3, generator=g)
    return theta, freq, tint


def synthetic_dataset(n: int, seed: int = 0, size: int = 32):
    """``(images uint8 (n, 3, size, size), labels (n,))``: each class is a set of
    three oriented gratings (low, medium and high frequency) with random phases,
    jittered orientation/frequency/amplitude, a colour tint and 1/f background
    noise. Deterministic for a seed."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    theta, freq, tint = _class_signatures()
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, N_CLASSES, (n,), generator=g)
    y, x = torch.meshgrid(torch.arange(size) / size, torch.arange(size) / size, indexing="ij")
    img = torch.zeros(n, size, size)
    for band in range(3):
        th = theta[labels, band] + 0.15 * torch.randn(n, generator=g)
        f = freq[labels, band] * (1 + 0.08 * torch.randn(n, generator=g))
        phase = 2 * math.pi * torch.rand(n, generator=g)
        amp = 0.06 + 0.1 * torch.rand(n, generator=g)
        arg = f[:, None, None] * (torch.cos(th)[:, None, None] * x + torch.sin(th)[:, None, None] * y)
        img += amp[:, None, None] * torch.cos(2 * math.pi * arg + phase[:, None, None])
    # 1/f background noise, the statistics of natural images
    spec = torch.randn(n, size, size, generator=g, dtype=torch.float32) + 0j
    ky = torch.fft.fftfreq(size) * size
    r = torch.sqrt(ky[:, None] ** 2 + ky[None, :] ** 2).clamp_min(1)
    noise = torch.fft.ifft2(spec / r).real
    noise = 0.12 * noise / noise.std(dim=(1, 2), keepdim=True)
    base = 0.3 + 0.4 * torch.rand(n, 3, generator=g)
    colour = tint[labels] * (0.8 + 0.4 * torch.rand(n, 3, generator=g))
    rgb = base[:, :, None, None] + colour[:, :, None, None] * (img + noise)[:, None]
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8), labels


def to_uint8_truncated(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as uint8, truncated as the CIFAR-10-C generator's ``np.uint8(...)``."""
    return (x * 255).floor().clamp(0, 255).to(torch.uint8)


def build_synthetic_c(root: str, n: int = 2000, seed: int = 1, names=None) -> str:
    """Write the synthetic test split corrupted by the built-in corruptions in the
    CIFAR-10-C layout under ``root`` (skipped when already there). Returns root."""
    names = tuple(CORRUPTIONS) if names is None else tuple(names)
    marker = os.path.join(root, f".complete-{n}-{seed}-{len(names)}")
    if os.path.exists(marker):
        return root
    os.makedirs(root, exist_ok=True)
    # runs started together on one --out: the first builds, the others wait
    # for it and then find the marker
    with exclusive(root):
        if os.path.exists(marker):
            return root
        imgs, labels = synthetic_dataset(n, seed)
        x = imgs.float() / 255
        g = torch.Generator().manual_seed(seed)
        for name in names:
            sev = [corrupt(x, name, s, generator=g) for s in range(1, 6)]
            arr = to_uint8_truncated(torch.cat(sev)).permute(0, 2, 3, 1).numpy()
            _atomic_save(os.path.join(root, f"{name}.npy"), arr)
        _atomic_save(os.path.join(root, "labels.npy"), np.tile(labels.numpy().astype(np.uint8), 5))
        atomic_write(marker, lambda tmp: open(tmp, "w").close())
    return root


def _atomic_save(path: str, arr: np.ndarray):
    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a name
            np.save(f, arr)
    atomic_write(path, write)


# ---------------------------------------------------------------- device loader
class DeviceLoader:
    """Batches of one split held on ``device`` (uint8), augmented there.

    Training order per batch: zero-pad ``pad`` -> ``augment`` (e.g.
    ``SpectralAugment``: power suppression, then NFD) -> random crop back to
    the original size -> horizontal flip -> normalise; all per sample, no host
    round trips. Iteration yields ``(x, y, params)`` where ``params`` are the
    augmentation's (for the APS labels; ``None`` without augmentation). The
    augmentation draws from the loader's seeded per-epoch generator unless it
    has a generator of its own (which is then left alone).
    ``rank``/``world_size`` shard each epoch's permutation (equal shard sizes).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 128, *,
                 device="cpu", train: bool = True, augment=None, pad: int = 4, flip: bool = True,
                 mean=CIFAR_MEAN, std=CIFAR_STD, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False):
        if images.dim() != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"images, labels: expected (N, C, H, W) and (N,), got "
                             f"{tuple(images.shape)} and {tuple(labels.shape)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: expected 0 <= rank < world_size={world_size}, got {rank}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.train, self.augment = batch_size, train, augment
        self.pad, self.flip = pad, flip
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = self.images.shape[0]
        if self.train:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            perm = torch.randperm(n, generator=g)
        else:
            perm = torch.arange(n)
        return perm[self.rank::self.world_size][:self._shard_size()].to(self.device)

    def _shard_size(self) -> int:
        """Images per rank and epoch (equal on every rank)."""
        return self.images.shape[0] // self.world_size

    def __len__(self):
        n = self._shard_size()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _generator(self):
        g = torch.Generator(device=self.device)
        g.manual_seed((self.seed * 1000003 + self.epoch) * 1009 + self.rank)
        return g

    def index_batches(self):
        """The epoch's batches as index tensors into ``images`` (the order
        ``__iter__`` uses): what a captured training step gathers itself."""
        idx = self._indices()
        for i in range(len(self)):
            yield idx[i * self.batch_size:(i + 1) * self.batch_size]

    def __iter__(self):
        idx = self._indices()
        g = self._generator() if self.train else None
        for i in range(len(self)):
            sel = idx[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[sel].float() / 255
            params = None
            if self.train:
                x, params = self._train_transform(x, g)
            yield (x - self.mean) / self.std, self.labels[sel], params

    def _augment(self, x, g):
        """(augmented x, its params). A fastfreq module without a generator of
        its own draws from this loader's per-epoch generator (reproducible
        runs); one with its own generator, or any other transform, is called
        as it is (its ``last_params``, if any, are returned)."""
        aug = self.augment
        if hasattr(aug, "sample_params") and getattr(aug, "generator", None) is None:
            # the draw inside the op, from the loader's generator: one op call
            out = aug(x, generator=g)
            return out, aug.last_params
        return aug(x), getattr(aug, "last_params", None)

    def _train_transform(self, x, g):
        B, C, H, W = x.shape
        p = self.pad
        if p:
            x = torch.nn.functional.pad(x, (p, p, p, p))
        params = None
        if self.augment is not None:
            x, params = self._augment(x, g)
        if p:
            off = torch.randint(0, 2 * p + 1, (B, 2), generator=g, device=self.device)
            rows = off[:, 0:1] + torch.arange(H, device=self.device)
            cols = off[:, 1:2] + torch.arange(W, device=self.device)
            b = torch.arange(B, device=self.device)[:, None, None]
            x = x.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if self.flip:
            flip = torch.rand(B, generator=g, device=self.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x.contiguous(), params


def corruption_change_table(clean: torch.Tensor, cset: CIFAR10C, names, seed: int = 0) -> dict:
    """``{name: [(ours, sample), ...] per severity}``: the mean absolute change
    (0..255) from the clean uint8 images made by the built-in corruption and
    found in a CIFAR-10-C folder of the same images (uint8 truncation as the
    original generator)."""
    x = clean.float() / 255
    g = torch.Generator().manual_seed(seed)
    table = {}
    for name in names:
        rows = []
        for s in range(1, 6):
            ours = (corrupt(x, name, s, generator=g) * 255).floor()
            theirs, _ = cset.severity(name, s)
            n = min(len(clean), len(theirs))
            rows.append((float((ours[:n] - clean[:n].float()).abs().mean()),
                         float((theirs[:n].float() - clean[:n].float()).abs().mean())))
        table[name] = rows
    return table
