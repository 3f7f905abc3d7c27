"""The one exception type that means "this item is bad", shared by stages and the helpers they use."""


class ItemError(ValueError):
    """One item (a source image and its rows) cannot be processed: undecodable, too small,
    inconsistent tables. The shard runner records the item as a failed row and the run goes on.
    Any other exception raised inside a stage's ``process`` is a bug: it fails the whole shard."""
