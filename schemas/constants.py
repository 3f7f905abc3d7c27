"""Values that the settings types (pipeline/settings, read by `pipeline --help`), the schemas and
the stages all need: defined once here, with no imports, so that reading them stays light."""

# score.mode, recorded in every scores row: quality maps pooled in the masks, or composite crops.
SCORE_MODES = ("map", "composite")
# <stage>.on_missing_gpu and dspo-infer --on_missing_gpu: what a missing CUDA device means.
ON_MISSING_GPU = ("fallback", "error")
# emit.judgements.rule: how several people's votes on one pair become one decision.
JUDGEMENT_RULES = ("majority", "latest", "dawid_skene")
# pair.uncertain: what happens to pairs below the confidence thresholds.
UNCERTAIN_PAIRS = ("drop", "review")
# segment.segmenter, recorded in the instances table.
SEGMENTERS = ("classical", "sam")
# Dataset splits, in order (emit.splits.<name> gives each its share).
SPLITS = ("train", "validation", "test")
# More candidates per image than any preference method uses (sample.num_candidates): a larger
# value is a typo that would sample for hours.
MAX_CANDIDATES = 64
