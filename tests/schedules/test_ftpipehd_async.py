"""FTPipeHD's asynchronous pipeline (PipeDream's 1F1B, weight stashing) against a hand-computed reference."""

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from splitpipe.config import RunConfig
from splitpipe.data import batches
from splitpipe.experiment import emulate, prepare
from splitpipe.schedules.ftpipehd import one_f_one_b

CONFIG = RunConfig(technique="ftpipehd", stages=3, cuts="1,2", batch_size=20, samples_per_device=100, epochs=1,
                   lr=0.1, momentum=0.0, network="wifi", progress=False, pipeline="async", repartition_every=0,
                   replicate_every=0, replicate_central_every=0)


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh()),
                         nn.Sequential(nn.Linear(16, 16), nn.Tanh()), nn.Linear(16, 10))


def stashing_reference(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, shard: np.ndarray,
                       stages: int) -> nn.Sequential:
    """Stage s's forward of mini-batch k comes after its backwards of k - (S - s) and earlier
    (its program: S - s forwards, then one backward and its step before each next forward), so
    it uses version max(0, k - (S - s) + 1) of its weights; the backward uses that same version
    and its gradient updates the newest: W_s[k + 1] = W_s[k] - lr * g_s(k)."""
    versions = [[{k: v.detach() for k, v in unit.named_parameters()}] for unit in model]
    order = batches(shard, CONFIG.batch_size, 0, CONFIG.seed)
    for k, batch in enumerate(order):
        index = torch.as_tensor(batch)
        used = [{n: p.clone().requires_grad_() for n, p in versions[s][max(0, k - (stages - s) + 1)].items()}
                for s in range(stages)]
        out = x[index]
        for unit, weights in zip(model, used):
            out = functional_call(unit, weights, (out,))
        F.cross_entropy(out, y[index]).backward()
        for s in range(stages):
            versions[s].append({n: versions[s][k][n] - CONFIG.lr * used[s][n].grad for n in used[s]})
    final = copy.deepcopy(model)
    for unit, history in zip(final, versions):
        unit.load_state_dict(history[-1], strict=False)
    return final


def test_async_equals_the_weight_stashing_reference() -> None:
    torch.manual_seed(0)
    model = mlp()
    setup = prepare(CONFIG, model=model)
    reference = stashing_reference(model, setup.dataset.x_train, setup.dataset.y_train, setup.shards[0], 3).state_dict()
    got = emulate(setup).model.state_dict()  # type: ignore[union-attr]
    sync = emulate(prepare(CONFIG.with_(pipeline="sync"), model=model)).model.state_dict()  # type: ignore[union-attr]
    for key in reference:
        assert torch.allclose(got[key], reference[key], atol=1e-6), key
    assert any(not torch.allclose(got[key], sync[key], atol=1e-4) for key in reference)  # stale weights differ


def test_async_program_steps_after_every_backward() -> None:
    from splitpipe.schedules import build_schedule

    plan = prepare(CONFIG).plan
    schedule = build_schedule(plan, 0)
    worker1 = " ".join(f"{a.op}{a.step}" for a in schedule.programs["worker1"][0] if a.is_compute)
    assert worker1 == "F0 F1 B0 U0 F2 B1 U1 F3 B2 U2 F4 B3 U3 B4 U4"
    assert [op for op, _ in one_f_one_b(3, 1, 5)][:3] == ["F", "F", "B"]  # at most S - s = 2 in flight
