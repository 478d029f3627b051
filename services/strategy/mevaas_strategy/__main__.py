from mevaas_strategy.server import run

run()
