"""auto-infer: the pipeline. `doit list` shows it; `auto-infer TASK` runs the same graph.

    template ──┬──> warm ──> rehearse    online: fill the caches (+ weights), write the manifest;
               │                         rehearse = a scratch install from the cache, no network
               └──> install ──> check    offline: prove the cache, install frozen, import check
                       └──> serve        start every instance at once → ready → chat → report
                                         (serve:NAME one; [router]: the gateway in front)
    boot       = what the AUTO_INFER_SGLANG_*_ON_BOOT gates ask: warm / rehearse / install+check / serve
    supervise  = install → serve → stay in the foreground as PID 1 (restart crashes; SIGTERM stops all)
    bundle     = export / import one file across the air gap (also infer-dev's pixi-pack archives)
    k8s        = Kubernetes manifests from the model config
    chat · status · logs · stop act on running servers; env prints the contract; demo shows it all.

Each task creator is a few lines in tasks/ (installed as auto_infer.tasks); the work is done by
doit-free modules in auto_infer/. All paths are absolute, so any working folder will do.
"""

from auto_infer.tasks import boot, bundle, demo, install, k8s, serve
from auto_infer.tasks.wiring import doit_config

if __name__ != "auto_infer.tasks.dodo":      # `doit TASK` in the repo: the same error handler as auto-infer
    from auto_infer.tasks.doit_main import plain_doit
    plain_doit()


def __getattr__(name: str) -> object:
    """DOIT_CONFIG is made when doit reads it: `auto-infer --help` lists the tasks without loading doit."""
    if name == "DOIT_CONFIG":
        return doit_config()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:           # doit reads the module through inspect.getmembers (dir + getattr)
    return [*globals(), "DOIT_CONFIG"]


# -- install pipeline (issue: template → warm → manifest → frozen install → import check)
task_template = install.task_template    # copy the mounted template into the project
task_warm = install.task_warm            # online; after template
task_rehearse = install.task_rehearse    # online, after warm: the cache alone installs it (no network)
task_install = install.task_install      # offline-capable; after template; lock content invalidates
task_check = install.task_check          # after install; always runs

# -- serving
task_serve = serve.task_serve            # after install; all instances at once; serve:NAME one
task_chat = serve.task_chat              # a real chat with each running instance
task_status = serve.task_status          # table or --json
task_logs = serve.task_logs              # tail of an instance's log
task_stop = serve.task_stop              # all, or by name
task_supervise = serve.task_supervise    # foreground (PID 1): install, serve, restart crashes, SIGTERM stops all

# -- container + tooling
task_boot = boot.task_boot               # gated by env vars; task_dep computed from the gates
task_env = install.task_env              # export lines for eval
task_bundle = bundle.task_bundle         # bundle export FILE [--since M] [--dry-run] | bundle import FILE
task_lock = install.task_lock            # pixi lock for the template (needs pixi + network)
task_demo = demo.task_demo               # the whole pipeline offline on an embedded default
task_k8s = k8s.task_k8s                  # Kubernetes manifests from the model config (writes only --out)
