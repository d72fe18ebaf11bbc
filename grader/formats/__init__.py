"""Readers of file formats, pure and small, used by the static reading (facts) and by the sandboxed worker
alike: what a model file is by its content, the TFLite FlatBuffer reader. They import only `records`."""
