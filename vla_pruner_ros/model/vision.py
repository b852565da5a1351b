"""OpenVLA's fused vision backbone (DINOv2-with-registers + SigLIP) and its image preprocessing.

Both towers are the transformers classes; features come from the second-to-last block (OpenVLA uses
timm's ``get_intermediate_layers(n={depth - 2})`` without the final norm), DINO's prefix tokens
(CLS + registers) removed, and the two are concatenated on channels, DINO first.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel, SiglipVisionConfig, SiglipVisionModel

from .config import RESIZES, VLAConfig
from .errors import ConfigError


class FusedVisionBackbone(nn.Module):
    """pixel_values (B, 6, H, W): DINO-normalised RGB then SigLIP-normalised RGB -> (B, M, 2176-like)."""

    def __init__(self, config: VLAConfig) -> None:
        super().__init__()
        self.featurizer = Dinov2WithRegistersModel(
            Dinov2WithRegistersConfig(**config.featurizer, attn_implementation="sdpa"))
        self.fused_featurizer = SiglipVisionModel(SiglipVisionConfig(**config.fused_featurizer,
                                                                     attn_implementation="sdpa"))
        self.num_prefix = 1 + int(config.featurizer.get("num_register_tokens", 0))

    def reset_unused_parameters(self) -> None:
        """Zero what OpenVLA's checkpoints do not hold, so that every model is representable in that format."""
        with torch.no_grad():
            emb = self.featurizer.embeddings
            emb.position_embeddings[:, 0].zero_()  # timm folds the CLS position into cls_token
            emb.mask_token.zero_()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        dino_in, siglip_in = pixel_values[:, :3], pixel_values[:, 3:]
        h = self.featurizer.embeddings(dino_in)  # (B, prefix + M, Dd)
        for block in self.featurizer.encoder.layer[:-1]:  # the last block's output is never used
            h = block(h)
        dino = h[:, self.num_prefix:]  # (B, M, Dd)
        s = self.fused_featurizer.embeddings(siglip_in)  # (B, M, Ds)
        for block in self.fused_featurizer.encoder.layers[:-1]:
            s = block(s, None)
        return torch.cat([dino, s], dim=-1)  # (B, M, Dd + Ds)


def resize_frame(image: np.ndarray, size: int, method: str = "pil_bicubic") -> np.ndarray:
    """A frame at the model's square size as inference sees it: naive bicubic resize (no crop).

    ``pil_bicubic``: PIL's bicubic, as OpenVLA's processor resizes (it antialiases when shrinking);
    ``cv2_cubic``: OpenCV's INTER_CUBIC, what the models trained here before that setting were trained with.
    """
    if image.shape[:2] == (size, size):
        return image
    if method == "pil_bicubic":
        return np.array(Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.Resampling.BICUBIC))
    if method == "cv2_cubic":
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
    raise ConfigError(f"resize={method!r}; expected one of {RESIZES}")


def center_crop(image: np.ndarray, area: float) -> np.ndarray:
    """OpenVLA-OFT's evaluation crop of a square uint8 frame (S, S, 3): the central ``area`` share (each
    side scaled by its square root) resized back to S x S as TensorFlow's ``crop_and_resize`` does, in
    float32 and in its order of operations (bilinear; output pixel i samples ``y1 (S - 1) + i * (y2 - y1)
    (S - 1) / (S - 1)``), on pixels converted to [0, 1] and back as ``convert_image_dtype`` does (x 1/255;
    x 255.5, truncate, saturate)."""
    f32 = np.float32
    size = image.shape[0]
    side = np.clip(np.sqrt(f32(area)), f32(0), f32(1))
    lo = (f32(1) - side) / f32(2)
    hi = lo + side
    scale = (hi - lo) * f32(size - 1) / f32(size - 1)
    coords = lo * f32(size - 1) + np.arange(size, dtype=f32) * scale
    i0 = np.floor(coords).astype(np.int64)
    i1 = np.ceil(coords).astype(np.int64)
    frac = coords - np.floor(coords)
    x = image.astype(f32) * f32(1.0 / 255.0)
    ty, by = x[i0], x[i1]  # rows above and below each output row
    top = ty[:, i0] + (ty[:, i1] - ty[:, i0]) * frac[None, :, None]
    bottom = by[:, i0] + (by[:, i1] - by[:, i0]) * frac[None, :, None]
    out = top + (bottom - top) * frac[:, None, None]
    return np.clip(np.clip(out, f32(0), f32(1)) * f32(255.5), 0, 255).astype(np.uint8)


def preprocess_images(images: list[np.ndarray], config: VLAConfig) -> torch.Tensor:
    """RGB uint8 frames (H, W, 3) -> pixel_values (num_cameras, 6, S, S), float32.

    Resize naively (no letterbox) to the model's square size with bicubic interpolation
    (``config.resize``), crop the centre as OFT's evaluation does where ``config.center_crop`` < 1,
    scale to [0, 1], then normalise once per tower with ``config.image_mean_std`` (a checkpoint's
    preprocessor_config.json where it has one; else ImageNet statistics for DINO, 0.5/0.5 for SigLIP).
    """
    size = config.image_size
    out = []
    for image in images:
        image = resize_frame(image, size, config.resize)
        if config.center_crop < 1.0:
            image = center_crop(image, config.center_crop)
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)  # (3, S, S)
        planes = []
        for mean, std in config.image_mean_std:
            m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
            s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
            planes.append((x - m) / s)
        out.append(torch.cat(planes, dim=0))
    return torch.stack(out)  # (num_cameras, 6, S, S)
