from hwnas.cli.main import main

main()
