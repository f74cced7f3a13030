"""serve/validate.py: the rules across instances, linear in their number (issue 21.9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from auto_infer.core import settings
from auto_infer.core.errors import UserError
from auto_infer.serve import config
from auto_infer.serve.model import ModelConfig


def load(tmp_path: Path, text: str) -> ModelConfig:
    path = tmp_path / "models.toml"
    path.write_text('[master]\nengine = "sglang"\n' + text)
    return config.load(settings.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"),
                                      "AUTO_INFER_SGLANG_CONFIG": str(path)}))


def inst(name: str, port: int, gpus: str | None, mem: float | None) -> str:
    control = f'[instance.{name}.control]\ngpu_ids = "{gpus}"\n' if gpus is not None else ""
    share = f"mem_fraction_static = {mem}\n" if mem is not None else ""
    return f'{control}[instance.{name}.server]\nmodel_path = "/m"\nport = {port}\n{share}'


def test_gpu_shares_are_summed_per_gpu_not_per_chain(tmp_path: Path) -> None:
    """a on GPUs 0 and 1, b on 0, c on 1, half each: every GPU holds exactly 1.0 -- allowed."""
    cfg = load(tmp_path, inst("a", 1, "0,1", 0.5) + inst("b", 2, "0", 0.5) + inst("c", 3, "1", 0.5))
    assert [i.name for i in cfg.instances] == ["a", "b", "c"]


def test_an_instance_on_every_gpu_counts_on_each(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        load(tmp_path, inst("all", 1, None, 0.5) + inst("b", 2, "0", 0.3) + inst("c", 3, "1", 0.6))
    assert "instances all and c share GPUs and their mem_fraction_static sum to 1.10" in str(err.value)
    assert "[instance.c.server] mem_fraction_static" in str(err.value)


def test_a_crowded_gpu_names_a_few_instances_and_counts_the_rest(tmp_path: Path) -> None:
    text = "".join(inst(f"i{n}", 20000 + n, "3", 0.1) for n in range(40))
    with pytest.raises(UserError) as err:
        load(tmp_path, text)
    message = str(err.value)
    assert "instances i0, i1, i2, i3, i4, i5 and 34 more share GPUs" in message and "4.00 > 1.0" in message
    assert "i39" in message                                 # the last one is where to lower it


def test_thousands_of_instances_on_eight_gpus_validate(tmp_path: Path) -> None:
    n = 4000
    cfg = load(tmp_path, "".join(inst(f"i{k}", 20000 + k, str(k % 8), 0.0018) for k in range(n)))
    assert len(cfg.instances) == n
