import sys

from auto_infer.cli import main

sys.exit(main())
