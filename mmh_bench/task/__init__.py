"""Tasks, from spec to instance: the TOML spec and its typed sections, the builders that turn a spec
into data and a model, the built and published instances, labels and the sampler."""
