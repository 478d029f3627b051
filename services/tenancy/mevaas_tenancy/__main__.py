from mevaas_tenancy.server import run

run()
