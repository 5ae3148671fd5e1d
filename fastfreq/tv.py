"""A ``torchvision.transforms.v2`` adapter (optional: needs torchvision).

    from torchvision.transforms import v2
    from fastfreq.transforms import PowerSuppression, NFD
    from fastfreq.tv import V2

    pipeline = v2.Compose([v2.RandomHorizontalFlip(), V2(PowerSuppression(p=0.5)), V2(NFD())])
    image, label = pipeline(image, label)     # tv_tensors.Image uint8 in, the same out

The fastfreq modules are already callable in ``v2.Compose`` (they return
their input's structure); the adapter adds torchvision's own dispatch:
``tv_tensors.Image``, PIL images and pure tensors (torchvision's rule for
which pure tensor is the image) are augmented, boxes, masks, labels and other
entries pass through, and every image of one sample gets the same draw.

PIL images (what torchvision datasets such as CIFAR10 and ImageFolder yield)
are converted to uint8 tensors, augmented, and converted back to a PIL image
of the same mode, as torchvision's own v2 transforms return PIL for PIL.
Modes "L" and "RGB" are accepted; others (palette "P", "RGBA", 16-bit, float)
are refused with a hint, because augmenting palette indices or an alpha
channel as if they were intensities would be wrong without a word.
"""
from __future__ import annotations

import torch
from PIL import Image as PILImage

try:
    from torchvision import tv_tensors
    from torchvision.transforms import v2
    IMPORT_ERROR: str | None = None
except Exception as exc:  # optional; a torchvision built for another torch raises RuntimeError
    v2 = tv_tensors = None
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

#: what to install when torchvision is missing or does not import
TORCHVISION_HINT = (f"install the torchvision built for torch {torch.__version__} (the same "
                    "release and build: the PyPI torchvision links torch's CUDA libraries and "
                    "does not import beside a CPU-only torch)")


def _require():
    if v2 is None:
        raise ImportError(f"fastfreq.tv needs torchvision ({IMPORT_ERROR}); {TORCHVISION_HINT}")


if v2 is not None:
    class V2(v2.Transform):
        """Wrap a fastfreq module (``PowerSuppression``, ``NFD``,
        ``SpectralAugment``) as a ``torchvision.transforms.v2.Transform``.

        Every image of one sample gets the same draw; boxes, masks, labels
        and other entries pass through (torchvision's dispatch).

        Args:
            module: the fastfreq augmentation module to apply.

        Shape:
            - Input: a sample as torchvision v2 takes it: ``tv_tensors.Image``
              / plain tensor images ``(C, H, W)`` or ``(B, C, H, W)``, PIL
              images of mode ``"L"`` or ``"RGB"``, beside anything else.
            - Output: the same structure; each image keeps its type (a PIL
              image comes back as a PIL image of the same mode and size),
              shape and dtype.

        Example:
            >>> import torch
            >>> from PIL import Image
            >>> from torchvision import tv_tensors
            >>> from torchvision.transforms import v2
            >>> from fastfreq import PowerSuppression
            >>> from fastfreq.tv import V2
            >>> _ = torch.manual_seed(0)
            >>> pipeline = v2.Compose([V2(PowerSuppression(p=1.0, alpha=(1.0, 1.0))), v2.ToImage()])
            >>> pil = Image.fromarray((torch.rand(40, 40, 3) * 255).to(torch.uint8).numpy())
            >>> out = pipeline(pil)                      # PIL in: augmented, then made an Image
            >>> type(out).__name__, out.shape, out.dtype
            ('Image', torch.Size([3, 40, 40]), torch.uint8)
            >>> bool((out != v2.functional.pil_to_tensor(pil)).any())
            True
            >>> image = tv_tensors.Image(torch.rand(3, 40, 40))
            >>> img, boxes = V2(PowerSuppression(p=1.0))(image, tv_tensors.BoundingBoxes(
            ...     [[0, 0, 10, 10]], format="XYXY", canvas_size=(40, 40)))
            >>> type(img).__name__, type(boxes).__name__, boxes.tolist()
            ('Image', 'BoundingBoxes', [[0, 0, 10, 10]])
        """

        _transformed_types = (tv_tensors.Image, torch.Tensor, PILImage.Image)
        _PIL_MODES = ("L", "RGB")

        def __init__(self, module: torch.nn.Module):
            super().__init__()
            if not hasattr(module, "sample_params") or not hasattr(module, "apply_params"):
                raise TypeError(f"module: expected a fastfreq augmentation module "
                                f"(PowerSuppression, NFD, SpectralAugment), got "
                                f"{type(module).__name__}")
            self.module = module

        @staticmethod
        def _is_image(inpt) -> bool:
            return (isinstance(inpt, (tv_tensors.Image, PILImage.Image))
                    or type(inpt) is torch.Tensor)

        def make_params(self, flat_inputs):
            for inpt in flat_inputs:
                if isinstance(inpt, PILImage.Image):
                    return {"draw": self.module.sample_params(1, "cpu", (inpt.height, inpt.width))}
                if self._is_image(inpt):
                    batch = inpt.shape[0] if inpt.dim() == 4 else 1
                    return {"draw": self.module.sample_params(batch, inpt.device,
                                                              tuple(inpt.shape[-2:]))}
            return {"draw": None}

        def transform(self, inpt, params):
            if isinstance(inpt, PILImage.Image):
                if inpt.mode not in self._PIL_MODES:
                    raise TypeError(f"x: expected a PIL image of mode 'L' or 'RGB', got mode "
                                    f"{inpt.mode!r}; convert it first (image.convert('RGB'))")
                out = self.module(v2.functional.pil_to_tensor(inpt), params=params["draw"])
                return v2.functional.to_pil_image(out, mode=inpt.mode)
            if not self._is_image(inpt):
                return inpt  # boxes, masks, videos: not images of this transform
            return self.module(inpt, params=params["draw"])
else:
    class V2:  # noqa: D101  (placeholder that explains what is missing)
        def __init__(self, *args, **kwargs):
            _require()
