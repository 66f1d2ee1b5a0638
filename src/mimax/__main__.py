from mimax.console import run

run()
