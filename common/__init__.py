"""Small helpers shared by every package (stages, pipeline, annotation UI, trainer): image
decode/encode, mask RLE, seeds, device resolution, the instance overlay. Depends on nothing
else in srprefs except ``schemas``."""
