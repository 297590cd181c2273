"""Task builders, one module per family; :data:`mmh_bench.registry.BUILDERS` names each one's function."""
