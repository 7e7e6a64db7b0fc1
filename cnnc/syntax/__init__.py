"""Front end: text → syntax tree (grammar in grammars/cnn.lark)."""
