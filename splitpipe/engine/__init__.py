"""Engines that execute schedules: emulate (virtual clock, real tensors), predict (no tensors)."""

__all__: list[str] = []
