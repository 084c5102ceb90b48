"""The synthetic world: scenes with known content rendered to real video files, captions and paraphrases.

A data source beside `tvr.eval.datasets`: the demo, the tests, the benchmarks and backbone pretraining
(`tvr.train.pretrain`, on its stills) all draw from it.
"""
