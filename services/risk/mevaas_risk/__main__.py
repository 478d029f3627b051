from mevaas_risk.server import run

run()
