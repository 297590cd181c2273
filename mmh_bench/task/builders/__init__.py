"""Task builders, one module per family: the heavy code a family record (mmh_bench.task.families) names by its ``builder`` target."""
