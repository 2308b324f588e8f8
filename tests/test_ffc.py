from pathlib import Path

import pytest
import torch

from trainer.inpainting.ffc import FFCResNetConfig, FFCResNetGenerator
from trainer.inpainting.inpainter import read_lama_config

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def reference(name: str) -> Path:
    """A file of ../shared/reference (beside the checkout in CI); the tests that need it skip without it."""
    path = REFERENCE / name
    if not path.exists():
        pytest.skip("shared/reference is not beside this checkout")
    return path


def reference_keys() -> list[tuple[str, list[int]]]:
    path = reference("big-lama-state-dict.tsv")
    rows = [line.split("\t") for line in path.read_text().strip().splitlines()]
    return [(k.removeprefix("generator."), [int(d) for d in s.strip("[]").split(",") if d.strip()]) for k, s in rows]


def test_big_lama_state_dict_matches_reference_key_for_key():
    ref = reference_keys()
    net = FFCResNetGenerator(read_lama_config(reference("big-lama-config.yaml")))
    mine = [(k, list(v.shape)) for k, v in net.state_dict().items()]
    assert len(ref) == 989
    assert mine == ref  # same keys, same order, same shapes
    assert sum(p.numel() for p in net.parameters()) == 50_975_875


def test_big_lama_config_resolves_interpolations():
    cfg = read_lama_config(reference("big-lama-config.yaml"))
    assert (cfg.ngf, cfg.n_downsampling, cfg.n_blocks) == (64, 3, 18)
    assert cfg.resnet_ratio_gin == cfg.resnet_ratio_gout == 0.75
    assert cfg.downsample_ratio_gin == 0 and cfg.add_out_act == "sigmoid"


def test_small_variant_shares_the_code_and_keeps_size():
    net = FFCResNetGenerator(FFCResNetConfig(ngf=8, n_blocks=2)).eval()
    out = net(torch.rand(2, 4, 32, 48))
    assert out.shape == (2, 3, 32, 48)
    assert 0 <= out.min() and out.max() <= 1


def test_unsupported_lama_options_fail_loudly():
    with pytest.raises(ValueError, match="enable_lfu"):
        FFCResNetConfig.from_lama_generator_block({"kind": "ffc_resnet", "resnet_conv_kwargs": {"enable_lfu": True}})
    with pytest.raises(ValueError, match="kind"):
        FFCResNetConfig.from_lama_generator_block({"kind": "pix2pixhd_global"})
