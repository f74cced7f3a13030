"""Before any server starts: check the weights each chosen instance names, and hand over their path.

An instance with ``[instance.NAME.model]`` gets the checked local folder (the Hub snapshot, or the
folder) as its ``model_path`` server key: SGLang's ``--model-path``, and the ``{model_path}``
placeholder of a ``command``. Instances without a model table are left exactly as they are.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

from auto_infer.core.progress import say
from auto_infer.core.settings import Settings
from auto_infer.serve.model import Instance, ModelConfig
from auto_infer.serve.validate import model_key
from auto_infer.weights import audit


def _model_value(inst: Instance, path: Path) -> str:
    """llama.cpp takes a GGUF file: the folder's one .gguf (or the first shard of a split model)."""
    if inst.engine != "llamacpp" or not path.is_dir():
        return str(path)
    firsts = audit.gguf_firsts(path)
    return str(firsts[0]) if len(firsts) == 1 else str(path)       # several: validate's message names them


def resolve(settings: Settings, cfg: ModelConfig, chosen: tuple[Instance, ...],
            verify: bool = False) -> tuple[Instance, ...]:
    sources = {i.name: i.model for i in chosen if i.model is not None}
    if not sources:
        return chosen
    checked = audit.check(settings, sources, str(cfg.path), verify)
    how = "size and sha256" if verify else "size"
    out = []
    for inst in chosen:
        found = checked.get(inst.name)
        if found is None:
            out.append(inst)
            continue
        say(f"  {inst.name}: weights {found.label}: every file present ({how} checked)")
        server = MappingProxyType({**inst.server, model_key(inst): _model_value(inst, found.path)})
        out.append(dataclasses.replace(inst, server=server, weights=MappingProxyType(found.summary)))
    return tuple(out)
