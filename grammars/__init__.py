"""The cnn language grammar, shipped inside the wheel as package `cnnc.grammars`."""
