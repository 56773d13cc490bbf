from vagan.cli import main

main()
