from auto_infer.cli import entry

entry()
