"""Stage-2 pixel losses (paper Eq. 7-10), computed on keyframes decoded differentiably.

* LPIPS (Eq. 7): :mod:`avatarsync.perceptual`, the tokenizer's perceptual loss
  (``build_perceptual("auto", lpips_weights, lpips_net)``): the ``lpips`` package
  with a local torchvision backbone file (``lpips_weights``: VGG16 / AlexNet /
  SqueezeNet ``features`` state dict; the linear heads ship with lpips), VGG16
  features without lpips, and without weights the weight-free stand-in
  (Laplacian-pyramid L1 + image-gradient L1).
* Identity consistency (Eq. 8): ``1 - cos`` between face embeddings of the
  generated and real keyframe, from facenet-pytorch's InceptionResnetV1 with
  a local weight file (``facenet_weights``, the 512-d vggface2 model).
* Facial similarity (Eq. 9): ``0.5 * cosine distance`` of the same embedder on
  the lower half of the face (mouth and jaw), where lip sync lives.

When facenet-pytorch or its weights are absent, both embedding losses use a
documented fallback embedder: the zero-mean 32x32 grey image (normalised
cross-correlation). It only says "same picture", not "same person"; train
with real weights for the paper's behaviour. ``PixelLosses.backends`` says
which backend each term got.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from ..perceptual import build_perceptual
from ..weights import read_state_dict

log = logging.getLogger("avatarsync.fkg")


# -- face embeddings -------------------------------------------------------------------------
class FallbackEmbedder(nn.Module):
    """Zero-mean 32x32 grey image, L2-normalised: cosine similarity = normalised cross-correlation."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grey = images.mean(1, keepdim=True)
        x = F.interpolate(grey, size=(32, 32), mode="bilinear", align_corners=False).flatten(1)
        return F.normalize(x - x.mean(1, keepdim=True), dim=1, eps=1e-6)


class FaceNetEmbedder(nn.Module):
    """facenet-pytorch InceptionResnetV1 (512-d) from a local weight file; input in [-1, 1]."""

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        from facenet_pytorch import InceptionResnetV1  # optional dependency

        self.net = InceptionResnetV1(pretrained=None, classify=False)
        state = {k: v for k, v in read_state_dict(weights, "face embedder weights").items()
                 if not k.startswith("logits.")}
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("logits.")]
        if missing or unexpected:
            raise CheckpointError(f"{weights} does not fit InceptionResnetV1: missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]}", "give the 512-d vggface2 model's state dict")
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=(160, 160), mode="bilinear", align_corners=False)
        return F.normalize(self.net(x), dim=1)


def load_embedder(weights: str | None) -> tuple[nn.Module, str]:
    if weights:
        try:
            return FaceNetEmbedder(weights), "facenet"
        except ImportError:
            log.warning("facenet-pytorch is not installed; identity losses use the fallback embedder "
                        "(pip install --no-deps facenet-pytorch)")
    return FallbackEmbedder(), "fallback"


# -- all three ---------------------------------------------------------------------------------
class PixelLosses(nn.Module):
    """LPIPS, identity and facial-similarity terms for generated vs real images in [-1, 1]."""

    def __init__(self, lpips_weights: str | None = None, facenet_weights: str | None = None,
                 lpips_net: str = "vgg", w_id: float = 1.0, w_fs: float = 1.0) -> None:
        super().__init__()
        self.perceptual = build_perceptual("auto", lpips_weights, lpips_net)
        self.embedder, embed_kind = load_embedder(facenet_weights)
        self.backends = {"lpips": self.perceptual.kind, "identity": embed_kind, "facial": embed_kind}
        self.w_id, self.w_fs = w_id, w_fs
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, gen: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        gen, real = gen.float(), real.float()
        lp = self.perceptual(gen, real).mean()
        cos_id = (self.embedder(gen) * self.embedder(real)).sum(1)
        half = gen.shape[-2] // 2
        cos_fs = (self.embedder(gen[..., half:, :]) * self.embedder(real[..., half:, :])).sum(1)
        return {
            "lpips": lp,
            "identity": ((1 - cos_id) * self.w_id).mean(),
            "facial": (0.5 * (1 - cos_fs) * self.w_fs).mean(),
        }
