from tsdiff_cli.cli import main

main()
