"""The language's semantics: values, the ops a `.cnn` file can call, and elaboration to IR."""
