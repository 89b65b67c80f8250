from caterva.cli.app import run

run()
