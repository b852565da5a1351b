"""Vision backbone and image preprocessing against transformers' own forward and a manual computation."""

from __future__ import annotations

import numpy as np
import torch
from conftest import frames, tiny

from vla_pruner_ros.model.vision import preprocess_images


def test_fused_features_are_second_to_last_blocks():
    model, _ = tiny("tokens")
    vb = model.vision_backbone
    x = torch.randn(2, 6, 56, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = vb(x)
        dino = vb.featurizer(pixel_values=x[:, :3], output_hidden_states=True).hidden_states[-2][:, 5:]
        sig = vb.fused_featurizer(pixel_values=x[:, 3:], output_hidden_states=True).hidden_states[-2]
    assert ours.shape == (2, 64, 64)
    assert torch.allclose(ours, torch.cat([dino, sig], dim=-1), atol=1e-6)


def test_preprocess_normalises_per_tower():
    model, _ = tiny("tokens")
    image = frames(1, size=56)[0]
    px = preprocess_images([image], model.config)
    assert px.shape == (1, 6, 56, 56)
    x = image.astype(np.float64) / 255.0
    dino = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    sig = (x - 0.5) / 0.5
    assert np.allclose(px[0, :3].permute(1, 2, 0).numpy(), dino, atol=1e-5)
    assert np.allclose(px[0, 3:].permute(1, 2, 0).numpy(), sig, atol=1e-5)


def test_preprocess_resizes_any_frame():
    model, _ = tiny("tokens")
    px = preprocess_images([np.zeros((480, 640, 3), np.uint8) + 128], model.config)
    assert px.shape == (1, 6, 56, 56)
    assert torch.allclose(px[0, 3:], torch.full((3, 56, 56), (128 / 255 - 0.5) / 0.5), atol=1e-5)


def _noise_frame(h: int = 480, w: int = 640, seed: int = 1) -> np.ndarray:
    """A non-square camera frame with detail at every scale (shrinking it shows whether the resize antialiases)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_resize_is_pils_bicubic_as_openvlas_processor():
    """OpenVLA's processor resizes the PIL image with bicubic; a model config says pil_bicubic (the default for
    OpenVLA checkpoints) and gets exactly PIL's pixels, normalised with its own constants."""
    from PIL import Image

    model, _ = tiny("tokens")
    cfg = model.config
    assert cfg.resize == "pil_bicubic"
    frame = _noise_frame()
    px = preprocess_images([frame], cfg)
    ref = np.asarray(Image.fromarray(frame).resize((56, 56), Image.BICUBIC), np.float64) / 255.0
    (dm, ds), (sm, ss) = cfg.image_mean_std
    assert np.allclose(px[0, :3].permute(1, 2, 0).numpy(), (ref - np.array(dm)) / np.array(ds), atol=1e-5)
    assert np.allclose(px[0, 3:].permute(1, 2, 0).numpy(), (ref - np.array(sm)) / np.array(ss), atol=1e-5)
    # OpenCV's cubic does not antialias: on this frame it differs by far more than rounding
    cv = preprocess_images([frame], cfg.replace(resize="cv2_cubic"))
    assert (cv - px).abs().max() > 0.5


def test_models_trained_here_keep_the_resize_they_were_trained_with(tmp_path):
    """A config.json written by this package before the setting existed was trained with OpenCV's cubic."""
    import json

    from vla_pruner_ros.model import EMBEDDED_DIR
    from vla_pruner_ros.model.config import VLAConfig

    data = json.loads((EMBEDDED_DIR / "config.json").read_text())
    assert "resize" not in data["vla_pruner"] and VLAConfig.from_json_dict(data).resize == "cv2_cubic"
    model, _ = tiny("tokens")
    saved = model.config.replace(resize="pil_bicubic").to_json_dict()
    assert VLAConfig.from_json_dict(saved).resize == "pil_bicubic"  # written now: kept as written
