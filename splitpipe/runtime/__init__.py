"""The real distributed runtime: nodes that run a schedule over a network transport."""

__all__: list[str] = []
