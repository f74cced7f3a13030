"""doit task creators (installed as ``auto_infer.tasks``). The pipeline itself is dodo.py."""
