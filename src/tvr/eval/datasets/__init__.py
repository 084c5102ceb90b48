"""Standard benchmarks: official annotation files → manifests (one module per benchmark).

Entry points: `convert.convert(ConvertRequest(...))` (what `tvr dataset convert` runs),
`convert.load_entries(...)`, and `registry.DATASETS` (every module here is imported on first use).
"""
