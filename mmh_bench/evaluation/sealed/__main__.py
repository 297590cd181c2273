import sys

if "--describe" in sys.argv[1:]:
    from .describe_worker import main
else:
    from .worker import main

sys.exit(main())
