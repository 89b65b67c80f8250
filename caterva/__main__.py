from caterva.cli.app import main

main()
