from vfiokit.cli import run

run()
