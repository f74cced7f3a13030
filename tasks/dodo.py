"""auto-infer: the pipeline. `doit list` shows it; `auto-infer TASK` runs the same graph.

    template ──┬──> warm  (online: fill the caches, write the cache manifest)
               └──> install (offline: prove the cache, install frozen) ──> check (imports)
                            └──> serve  (start every instance at once → ready → chat → report)
                                 serve:NAME = the same for one instance
    boot = the gates AUTO_INFER_SGLANG_{CACHE_WARM,INSTALL,}_ON_BOOT → warm / install+check / serve
    bundle export/import carries template + caches across an air gap (docs/bundle.md).
    chat · status · logs · stop act on running servers; env prints the contract; demo shows it all.
    supervise = install → serve → stay in the foreground (restart crashes; SIGTERM stops everything).
    k8s renders Kubernetes manifests (Deployments / LeaderWorkerSets, Services, gateway) from the model config.

Each task creator is a few lines in auto_infer/tasks/ (repo folder tasks/); the work is done by
doit-free modules in auto_infer/. All paths are absolute, so any working folder will do.
"""

from auto_infer.tasks import boot, bundle, demo, install, k8s, serve
from auto_infer.tasks.common import doit_config

DOIT_CONFIG = doit_config()

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
