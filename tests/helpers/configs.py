"""Model configs for tests: the shipped examples, infer-dev's real one, and the invalid cases
(``BAD``: each with the words its one message must say), rendered with a model folder and ports.
Used by test_config (in process), test_serve_invalid (through `serve`), the SGLang and real-wheel tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import realworld

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "model-configs").glob("*.toml"))
REALWORLD = realworld("sglang-glm-4.7-tp8.toml")


@dataclass(frozen=True)
class Bad:
    id: str
    toml: str                      # {model} = an existing folder, {port} = a free port
    says: tuple[str, ...]          # what the message must name: the what, the instance, the key
    overrides: str = ""
    host_check: bool = False       # found by the host checks (paths, ports), not by load()
    extra: dict[str, str] = field(default_factory=dict)


CMD = 'command = ["python", "-m", "srv", "--port", "{{port}}"]'
SGL = '[instance.{name}.server]\nmodel_path = "{{model}}"\nport = {port}\n'
BAD: list[Bad] = [
    Bad("toml-syntax", "[instance.a.server]\nport = 30000\nhost = \n", ("TOML syntax error", "line 3")),
    Bad(
        "unknown-control-key",
        f"[instance.a.control]\n{CMD}\nreadytimeout = 5\n[instance.a.server]\nport = {{port}}\n",
        ("unknown key 'readytimeout'", "[instance.a.control]", "ready_timeout"),
    ),
    Bad(
        "unknown-master-key",
        "[master]\nenabled = true\n",
        ("unknown key 'enabled' in [master]", "api_server_module, enable, engine"),
    ),
    Bad(
        "unknown-default-control-key",
        '[instance.control]\nlogdir = "/tmp"\n',
        ("unknown key 'logdir'", "[instance.control]"),
    ),
    Bad("unknown-top-table", "[masters]\nenable = true\n", ("unknown top-level table 'masters'",)),
    Bad("unknown-instance-table", "[instance.a.servers]\nport = 1\n", ("unknown key 'servers' in [instance.a]",)),
    Bad("instance-not-a-table", "[instance]\na = 1\n", ("[instance.a] must be a table",)),
    Bad(
        "wrong-type-control",
        f'[instance.a.control]\n{CMD}\nready_timeout = "soon"\n[instance.a.server]\nport = {{port}}\n',
        ("[instance.a.control] ready_timeout has the wrong type (str)", "a number"),
    ),
    Bad("wrong-type-master", '[master]\nenable = "yes"\n', ("[master] enable has the wrong type", "true/false")),
    Bad(
        "wrong-type-env",
        f"[instance.a.control]\n{CMD}\nenv = {{{{ X = [1] }}}}\n[instance.a.server]\nport = {{port}}\n",
        ("control env X must be a string or a number", "[instance.a.control] env.X"),
    ),
    Bad(
        "wrong-type-server",
        '[instance.a.server]\nmodel_path = "{model}"\nport = {port}\nrope = [[1]]\n',
        ("[instance.a.server] rope has a value that cannot become a flag",),
    ),
    Bad(
        "bad-gpu-ids",
        f'[instance.a.control]\n{CMD}\ngpu_ids = "0,x"\n[instance.a.server]\nport = {{port}}\n',
        ("gpu_ids '0,x' is not a GPU list", "[instance.a.control] gpu_ids"),
    ),
    Bad(
        "negative-timeout",
        f"[instance.a.control]\n{CMD}\nready_timeout = -1\n[instance.a.server]\nport = {{port}}\n",
        ("ready_timeout must be a positive number", "[instance.a.control] ready_timeout"),
    ),
    Bad(
        "empty-command",
        "[instance.a.control]\ncommand = []\n[instance.a.server]\nport = {port}\n",
        ("command must be a non-empty list of strings", "[instance.a.control] command"),
    ),
    Bad(
        "no-model-path",
        '[instance.a.server]\nport = {port}\nserved_model_name = "x"\n',
        ("instance a has no model_path", "[instance.a.server] model_path"),
    ),
    Bad(
        "model-path-missing",
        '[instance.a.server]\nmodel_path = "/nonexistent/model"\nport = {port}\n',
        ("instance a: model_path does not exist: /nonexistent/model", "[instance.a.server] model_path"),
        host_check=True,
    ),
    Bad(
        "bad-port",
        '[instance.a.server]\nmodel_path = "{model}"\nport = 70000\n',
        ("instance a: port 70000 is not a TCP port", "[instance.a.server] port"),
    ),
    Bad(
        "same-port",
        SGL.format(name="a", port="{port}") + SGL.format(name="b", port="{port}"),
        ("instances a and b both use port", "[instance.b.server] port"),
    ),
    Bad(
        "same-default-port",
        '[instance.server]\nport = {port}\n[instance.a.server]\nmodel_path = "{model}"\n'
        '[instance.b.server]\nmodel_path = "{model}"\n',
        ("instances a and b both use port", "shared default", "[instance.b.server] port"),
    ),
    Bad(
        "port-in-use",
        SGL.format(name="a", port="{busy}"),
        ("instance a: port", "is already in use", "[instance.a.server] port"),
        host_check=True,
    ),
    Bad(
        "gpus-shared-no-fraction",
        '[instance.control]\ngpu_ids = "0"\n'
        + SGL.format(name="a", port=31001)
        + "mem_fraction_static = 0.4\n"
        + SGL.format(name="b", port=31002),
        ("instances a and b share GPUs, and b sets no mem_fraction_static", "[instance.b.control] gpu_ids"),
    ),
    Bad(
        "gpus-shared-too-much",
        '[instance.control]\ngpu_ids = "0"\n'
        + SGL.format(name="a", port=31001)
        + "mem_fraction_static = 0.6\n"
        + SGL.format(name="b", port=31002)
        + "mem_fraction_static = 0.5\n",
        (
            "instances a and b share GPUs and their mem_fraction_static sum to 1.10 > 1.0",
            "[instance.b.server] mem_fraction_static",
        ),
    ),
    Bad(
        "gpus-all-shared",
        SGL.format(name="a", port=31001) + '[instance.b.control]\ngpu_ids = "1"\n' + SGL.format(name="b", port=31002),
        ("instances a and b share GPUs", "[instance.a.control] gpu_ids"),
    ),
    Bad(
        "tp-dp-too-big",
        '[instance.a.control]\ngpu_ids = "0,1,2"\n'
        + SGL.format(name="a", port="{port}")
        + "tp_size = 2\ndp_size = 2\n",
        ("instance a needs 4 GPUs (tp_size 2 × dp_size 2) but gpu_ids gives 3", "[instance.a.control] gpu_ids"),
    ),
    Bad(
        "bad-mem-fraction",
        SGL.format(name="a", port="{port}") + "mem_fraction_static = 1.5\n",
        ("instance a: mem_fraction_static must be in (0, 1]", "[instance.a.server] mem_fraction_static"),
    ),
    Bad(
        "nnodes-alone",
        SGL.format(name="a", port="{port}") + "nnodes = 2\n",
        ("nnodes, node_rank and dist_init_addr go together", "[instance.a.server] node_rank"),
    ),
    Bad(
        "node-rank-alone",
        SGL.format(name="a", port="{port}") + "node_rank = 1\n",
        ("nnodes, node_rank and dist_init_addr go together", "(given: node_rank)", "[instance.a.server] nnodes"),
    ),
    Bad(
        "node-rank-too-big",
        SGL.format(name="a", port="{port}") + 'nnodes = 2\nnode_rank = 2\ndist_init_addr = "10.0.0.1:5000"\n',
        ("node_rank 2 must be below nnodes 2", "[instance.a.server] node_rank"),
    ),
    Bad(
        "dist-init-addr",
        SGL.format(name="a", port="{port}") + 'nnodes = 2\nnode_rank = 0\ndist_init_addr = "10.0.0.1"\n',
        ("dist_init_addr '10.0.0.1' is not host:port", "[instance.a.server] dist_init_addr"),
    ),
    Bad(
        "unknown-placeholder",
        '[instance.a.control]\ncommand = ["srv", "--port", "{{prot}}"]\n[instance.a.server]\nport = {port}\n',
        ("instance a: command uses {prot}, which is not a server key", "[instance.a.control] command"),
    ),
    Bad(
        "same-log-file",
        f'[instance.control]\nlog_file = "one.log"\n{CMD}\n[instance.a.server]\nport = 31001\n'
        "[instance.b.server]\nport = 31002\n",
        ("instances a and b both log to", "[instance.b.control] log_file"),
    ),
    Bad(
        "overrides-bad-json",
        SGL.format(name="a", port="{port}"),
        ("AUTO_INFER_SGLANG_OVERRIDES is not valid JSON",),
        overrides='{"instance": ',
    ),
    Bad(
        "overrides-not-object",
        SGL.format(name="a", port="{port}"),
        ("AUTO_INFER_SGLANG_OVERRIDES must be a JSON object",),
        overrides="[1, 2]",
    ),
    Bad(
        "overrides-make-it-bad",
        SGL.format(name="a", port="{port}"),
        ("unknown key 'bogus' in [instance.a.control]", "(after AUTO_INFER_SGLANG_OVERRIDES)"),
        overrides='{"instance": {"a": {"control": {"bogus": 1}}}}',
    ),
]


def render(case: Bad, model: Path, port: int, busy: int = 0) -> str:
    return case.toml.format(model=model, port=port, busy=busy)
