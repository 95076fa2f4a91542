"""splitpipe: pipeline-parallel collaborative learning (FL, SL, SFL, PipeLearn, MP-SL, FTPipeHD).

    import splitpipe
    config = splitpipe.RunConfig(technique="pipelearn", devices=4, epochs=2)
    result = splitpipe.run(config)            # emulated: report, spans, the trained model
    splitpipe.predict(config).time_s          # predicted epoch time, no training
    splitpipe.choose_plan(config).settings    # the fastest split and micro-batches
    splitpipe.launch(config)                  # one process per node over gRPC

(`choose_plan`, not `plan`: splitpipe.plan is the module of Plan.) Names load on first use, so `import splitpipe` (and `splitpipe --help`) imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "RunConfig", "run", "predict", "choose_plan", "launch", "TECHNIQUES"]

_WHERE = {
    "RunConfig": "splitpipe.config",
    "run": "splitpipe.api",
    "predict": "splitpipe.api",
    "choose_plan": "splitpipe.api",
    "launch": "splitpipe.api",
    "TECHNIQUES": "splitpipe.schedules.registry:NAMES",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'splitpipe' has no attribute '{name}'")
    module, _, attribute = where.partition(":")
    return getattr(importlib.import_module(module), attribute or name)
