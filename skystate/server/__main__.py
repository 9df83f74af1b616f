from skystate.server.main import main

main()
