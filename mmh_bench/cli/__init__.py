"""The ``mmh-bench`` command line: :mod:`.main` holds the top-level parser, and every command is a
module here with ``register(subparsers)``; :mod:`.options` defines the options several commands share."""
