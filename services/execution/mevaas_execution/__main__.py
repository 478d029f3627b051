from mevaas_execution.server import run

run()
