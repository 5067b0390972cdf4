from nearrec.cli.main import main

main()
