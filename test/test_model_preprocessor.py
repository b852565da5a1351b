"""A checkpoint's preprocessor_config.json sets the image normalisation, as OpenVLA's processor reads it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny
from PIL import Image

from vla_pruner_ros.model import load_checkpoint, save_checkpoint
from vla_pruner_ros.model.config import VLAConfig, read_preprocessor
from vla_pruner_ros.model.errors import CheckpointError
from vla_pruner_ros.model.vision import preprocess_images

# the real file's layout (openvla/openvla-7b), with values of our own so that a test can tell them apart
PROCESSOR = {
    "image_processor_type": "PrismaticImageProcessor", "image_resize_strategy": "resize-naive",
    "input_sizes": [[3, 56, 56], [3, 56, 56]], "interpolations": ["bicubic", "bicubic"],
    "means": [[0.484375, 0.455078125, 0.40625], [0.25, 0.5, 0.75]],
    "stds": [[0.228515625, 0.2236328125, 0.224609375], [0.5, 0.25, 0.125]],
    "processor_class": "PrismaticProcessor", "tvf_crop_params": [{"output_size": [56, 56]}] * 2,
    "use_fused_vision_backbone": True,
}


@pytest.fixture
def checkpoint(tmp_path):
    model, tokenizer = tiny("tokens")
    save_checkpoint(model, tmp_path / "ckpt", tokenizer)
    return tmp_path / "ckpt"


def test_normalisation_comes_from_the_checkpoints_preprocessor_config(checkpoint):
    (checkpoint / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    model = load_checkpoint(checkpoint)
    cfg = model.config
    frame = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)  # non-square
    px = preprocess_images([frame], cfg)
    x = np.asarray(Image.fromarray(frame).resize((56, 56), Image.BICUBIC), np.float64) / 255.0
    for tower in range(2):
        mean, std = np.array(PROCESSOR["means"][tower]), np.array(PROCESSOR["stds"][tower])
        got = px[0, 3 * tower:3 * tower + 3].permute(1, 2, 0).numpy()
        assert np.allclose(got, (x - mean) / std, atol=1e-5)
    assert VLAConfig.from_dir(checkpoint).image_mean_std == cfg.image_mean_std


def test_the_published_openvla_preprocessor_config_reads(shared_data):
    (dino_mean, dino_std), (sig_mean, sig_std) = read_preprocessor(shared_data / "openvla-7b" /
                                                                   "preprocessor_config.json")
    published = json.loads((shared_data / "openvla-7b" / "preprocessor_config.json").read_text())
    assert [list(dino_mean), list(sig_mean)] == published["means"]
    assert [list(dino_std), list(sig_std)] == published["stds"]


@pytest.mark.parametrize("change, message", [
    ({"means": [[0.5, 0.5], [0.5, 0.5, 0.5]]}, r"means=.*expected two RGB triples"),
    ({"stds": [[0.2, 0.2, 0.0], [0.5, 0.5, 0.5]]}, r"stds=.*must be positive"),
    ({"interpolations": ["bilinear", "bicubic"]}, r"interpolations=\['bilinear', 'bicubic'\]; expected 'bicubic'"),
    ({"image_resize_strategy": "letterbox"}, r"image_resize_strategy='letterbox'; expected 'resize-naive'"),
    ({"input_sizes": [[3, 224, 224], [3, 224, 224]]}, r"input_sizes=.*take \[3, 56, 56\]"),
])
def test_a_preprocessor_config_it_cannot_follow_is_refused_by_name(checkpoint, change, message):
    (checkpoint / "preprocessor_config.json").write_text(json.dumps({**PROCESSOR, **change}))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(checkpoint)
