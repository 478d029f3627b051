from mevaas_analytics.server import run

run()
