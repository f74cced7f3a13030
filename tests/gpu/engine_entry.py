"""`transformers serve`, started by auto-infer, after one line on what this very process sees.

    <env python> engine_entry.py serve [transformers serve options] MODEL

It prints `AUTO_INFER_GPU_PROOF {json}` (its pid, interpreter, CUDA_VISIBLE_DEVICES,
torch.cuda.device_count(), the GPU names, where torch and fastapi come from) into its log, then runs
transformers' own CLI in the same process.
"""

import json
import os
import sys

import fastapi
import torch

seen = {"pid": os.getpid(), "executable": sys.executable,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cuda_available": torch.cuda.is_available(), "device_count": torch.cuda.device_count(),
        "names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "torch": torch.__version__, "torch_file": torch.__file__, "fastapi_file": fastapi.__file__}
print("AUTO_INFER_GPU_PROOF " + json.dumps(seen), flush=True)

from transformers.cli.transformers import main  # noqa: E402

sys.argv = ["transformers", *sys.argv[1:]]
sys.exit(main())
