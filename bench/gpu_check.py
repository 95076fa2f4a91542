"""GPU checks without the CLI (no gRPC needed): emulator runs with the server's or compute nodes' parts on CUDA."""

import json
import sys

from splitpipe.config import RunConfig
from splitpipe.experiment import emulate, prepare
from splitpipe.report import write_run

out = sys.argv[1]
runs = {
    "pipelearn-cuda": RunConfig(technique="pipelearn", dataset="synthetic", batch_size=100, epochs=2,
                                server_device="cuda", device_speed=(1,), network="wifi", progress=False),
    "mpsl-cuda": RunConfig(technique="mpsl", model="vgg19", dataset="synthetic:train_size=800,test_size=100",
                           batch_size=50, epochs=1, owners=8, compute_nodes=2, cuts=(3, 12, 23),
                           server_device="cuda", device_speed=(1,), progress=False),
}
for name, config in runs.items():
    result = emulate(prepare(config))
    write_run(f"{out}/{name}", result.report, result.spans)
    e = result.report["epochs"][-1]
    print(name, "time_s", round(e["time_s"], 3), "acc", e["test_accuracy"], "memory", json.dumps(e.get("memory_bytes")),
          {k: v for k, v in e.items() if "cuda" in k})
