"""The data stage: captions paired with decoded clips, expert streams and the batches cut from them.

Sits between the feature store (`tvr.features`) and the models: training, evaluation, indexing and
re-ranking all read their clips through `Clips` and their caption/clip pairs through `PairSet`.
"""
