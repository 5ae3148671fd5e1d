"""A ``torchvision.transforms.v2`` adapter (optional: needs torchvision).

    from torchvision.transforms import v2
    from fastfreq.transforms import PowerSuppression, NFD
    from fastfreq.tv import V2

    pipeline = v2.Compose([v2.RandomHorizontalFlip(), V2(PowerSuppression(p=0.5)), V2(NFD())])
    image, label = pipeline(image, label)     # tv_tensors.Image uint8 in, the same out

The fastfreq modules are already callable in ``v2.Compose`` (they return
their input's structure); the adapter adds torchvision's own dispatch:
``tv_tensors.Image`` and pure tensors (torchvision's rule for which pure
tensor is the image) are augmented, boxes, masks, labels and other entries
pass through, and every image of one sample gets the same draw.
"""
from __future__ import annotations

import torch

try:
    from torchvision import tv_tensors
    from torchvision.transforms import v2
    IMPORT_ERROR: str | None = None
except ImportError as exc:  # optional dependency
    v2 = tv_tensors = None
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


def _require():
    if v2 is None:
        raise ImportError(f"fastfreq.tv needs torchvision ({IMPORT_ERROR}); "
                          "`pip install fastfreq[torchvision]`")


if v2 is not None:
    class V2(v2.Transform):
        """Wrap a fastfreq module (``PowerSuppression``, ``NFD``,
        ``SpectralAugment``) as a ``torchvision.transforms.v2.Transform``."""

        _transformed_types = (tv_tensors.Image, torch.Tensor)

        def __init__(self, module: torch.nn.Module):
            super().__init__()
            if not hasattr(module, "sample_params") or not hasattr(module, "apply_params"):
                raise TypeError(f"module: expected a fastfreq augmentation module "
                                f"(PowerSuppression, NFD, SpectralAugment), got "
                                f"{type(module).__name__}")
            self.module = module

        @staticmethod
        def _is_image(inpt) -> bool:
            return isinstance(inpt, tv_tensors.Image) or type(inpt) is torch.Tensor

        def make_params(self, flat_inputs):
            for inpt in flat_inputs:
                if self._is_image(inpt):
                    batch = inpt.shape[0] if inpt.dim() == 4 else 1
                    return {"draw": self.module.sample_params(batch, inpt.device,
                                                              tuple(inpt.shape[-2:]))}
            return {"draw": None}

        def transform(self, inpt, params):
            if not self._is_image(inpt):
                return inpt  # boxes, masks, videos: not images of this transform
            return self.module(inpt, params=params["draw"])
else:
    class V2:  # noqa: D101  (placeholder that explains what is missing)
        def __init__(self, *args, **kwargs):
            _require()
