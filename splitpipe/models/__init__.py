"""Models as sequences of units: the zoo, and cutting a model into parts."""

from splitpipe.models.split import check_cuts, even_cuts, split_model
from splitpipe.models.zoo import MODEL_NAMES, build_model

__all__ = ["MODEL_NAMES", "build_model", "check_cuts", "even_cuts", "split_model"]
