"""scripts/average_generators.py: a uniform weight average of generators of one architecture."""

import importlib.util
from pathlib import Path

import pytest
import torch

from generator import NoiseUNet, UNetConfig, load_generator, save_generator

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "average_generators.py"
spec = importlib.util.spec_from_file_location("average_generators", SCRIPT)
average_generators = importlib.util.module_from_spec(spec)
spec.loader.exec_module(average_generators)


def saved(tmp_path, name: str, seed: int, widths=(8, 16)) -> Path:
    torch.manual_seed(seed)
    return save_generator(NoiseUNet(UNetConfig(widths=list(widths))), tmp_path / f"{name}.safetensors")


def test_the_average_loads_as_a_generator_with_the_mean_weights(tmp_path, capsys):
    paths = [saved(tmp_path, f"g{i}", seed=i) for i in range(3)]
    out = tmp_path / "soup.safetensors"
    assert average_generators.main([*map(str, paths), "-o", str(out)]) == 0
    soup, nets = load_generator(out), [load_generator(p) for p in paths]
    for key, tensor in soup.state_dict().items():
        expected = torch.stack([n.state_dict()[key].float() for n in nets]).mean(0)
        assert torch.allclose(tensor.float(), expected, atol=1e-6), key
    assert all(not torch.equal(soup.state_dict()["stem.1.weight"], n.state_dict()["stem.1.weight"]) for n in nets)
    assert "averaged 3 generators" in capsys.readouterr().out


def test_other_architectures_and_bad_outputs_are_one_line_errors(tmp_path, capsys):
    a, b = saved(tmp_path, "a", 0), saved(tmp_path, "wide", 1, widths=(16, 32))
    out = tmp_path / "soup.safetensors"
    assert average_generators.main([str(a), str(b), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "another architecture" in err and len(err.splitlines()) == 1
    assert not out.exists()
    with pytest.raises(SystemExit) as exit_:
        average_generators.main([str(a), str(a), "-o", str(a)])
    assert exit_.value.code == 2 and "is one of the inputs" in capsys.readouterr().err
