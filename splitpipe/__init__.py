"""splitpipe: pipeline-parallel collaborative learning (FL, SL, SFL, PipeLearn, MP-SL, FTPipeHD)."""

__version__ = "0.1.0"
__all__ = ["__version__"]
