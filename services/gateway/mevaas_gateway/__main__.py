from mevaas_gateway.server import run

run()
