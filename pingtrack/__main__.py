from pingtrack.cli import main

main()
