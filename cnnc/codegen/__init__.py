"""Code generation: optimized IR → readable Python source for an executor."""
