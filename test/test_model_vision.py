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
