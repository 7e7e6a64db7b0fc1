"""Running compiled networks: parameters, generated-code loading, the executor object."""
