"""Task specs shipped with mmh-bench: one TOML file per task (installed as ``mmh_bench_tasks``)."""
