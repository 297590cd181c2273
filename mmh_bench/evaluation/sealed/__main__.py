import sys

if "--describe" in sys.argv[1:]:
    from .describe import main
else:
    from .worker import main

sys.exit(main())
