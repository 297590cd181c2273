"""Extra ``mmh-bench`` subcommands, one module each.

Each module defines ``register(subparsers) -> None`` that adds its parser and sets
``func=handler``; handlers take the parsed args and return an exit status. List the module in
:data:`MODULES` to enable it.
"""

MODULES: list[str] = [
    "dedup",
    "mitigate",
    "publish",
    "show",
    "submit",
    "validate",
]
