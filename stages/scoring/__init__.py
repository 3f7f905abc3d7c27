"""Per-instance IQA scoring: metrics (pyiqa, offline), crops, the batched scorer and the reward."""
