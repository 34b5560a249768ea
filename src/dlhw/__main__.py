from dlhw.cli import main

main()
