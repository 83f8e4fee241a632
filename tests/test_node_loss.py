"""The recipe's handling of lost clients, through its own Transport interface (no engine)."""

import json

import pytest
import torch

from fedmllm.config import RunConfig
from fedmllm.errors import FedmllmError
from fedmllm.fl.screen import ClientUpdate
from fedmllm.run import federate
from fedmllm.transport import RoundResult

SMALL = dict(num_clients=4, clients_per_round=3, rounds=4, synthetic_train=60, synthetic_test=16,
             generate_eval=False, eval_views=False, eval_every=4, partition="iid", scenario="none")  # fmt: skip


class LosingTransport:
    """Every client returns the model it was sent, except `dead`, which stops answering at `from_round`."""

    def __init__(self, dead: int, from_round: int) -> None:
        self.dead, self.from_round, self.asked = dead, from_round, []

    def partitions(self, run):
        return {k: 100 + k for k in range(run["num_clients"])}

    def train(self, jobs, nodes, run, rnd):
        self.asked.append([j.partition for j in jobs])
        result = RoundResult(updates=[])
        for job in jobs:
            if job.partition == self.dead and rnd["round"] >= self.from_round:
                result.failures.append(f"node {nodes[job.partition]} (partition {job.partition}): Node Unavailable")
            else:
                result.updates.append(ClientUpdate(job.partition, job.params, 10, 0.5, steps=2))
        return result


def test_a_lost_client_is_logged_and_never_sampled_again(tmp_path, caplog):
    transport = LosingTransport(dead=2, from_round=2)
    cfg = RunConfig(**SMALL, min_clients=2, out=str(tmp_path))
    summary = federate(cfg, tmp_path, transport)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lost_round = next(r for r in rows if r["failed"])
    assert lost_round["round"] >= 2 and "partition 2" in lost_round["failed"][0]
    assert 2 not in lost_round["clients"]
    later = transport.asked[lost_round["round"] :]
    assert later and all(2 not in asked and len(asked) == 3 for asked in later)  # 3 of the 3 left
    assert summary["lost_clients"] == [2]
    assert "lost client(s) [2]" in caplog.text


def test_too_few_replies_stop_the_run(tmp_path):
    cfg = RunConfig(**SMALL, min_clients=3, out=str(tmp_path))
    with pytest.raises(FedmllmError, match=r"round \d: 2 client\(s\) replied, fewer than min_clients=3"):
        federate(cfg, tmp_path, AlwaysLosing())


class AlwaysLosing(LosingTransport):
    def __init__(self) -> None:
        super().__init__(dead=-1, from_round=1)

    def train(self, jobs, nodes, run, rnd):
        self.dead = jobs[0].partition  # whoever is sampled first is lost
        return super().train(jobs, nodes, run, rnd)


class PoisoningTransport(LosingTransport):
    """Partition 1 sends NaNs in round 2; partition 2 sends a 1000x step in round 3."""

    def __init__(self) -> None:
        super().__init__(dead=-1, from_round=99)

    def train(self, jobs, nodes, run, rnd):
        result = RoundResult(updates=[])
        for job in jobs:
            params = {n: t + 0.001 * (job.partition + 1) for n, t in job.params.items()}  # an honest small step
            if job.partition == 1 and rnd["round"] == 2:
                params = {n: torch.full_like(t, float("nan")) for n, t in job.params.items()}
            if job.partition == 2 and rnd["round"] == 3:
                params = {n: t + 1.0 for n, t in job.params.items()}
            result.updates.append(ClientUpdate(job.partition, params, 10, 0.5, steps=2))
        return result


def test_nan_and_outlier_updates_are_rejected_and_the_round_goes_on(tmp_path):
    cfg = RunConfig(**{**SMALL, "clients_per_round": 4, "rounds": 3}, out=str(tmp_path))
    summary = federate(cfg, tmp_path, PoisoningTransport())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["rejected"] == [] and rows[0]["clients"] == [0, 1, 2, 3]
    assert rows[1]["rejected"] == [{"partition": 1, "reason": "nonfinite", "detail": "the update holds NaN/Inf values"}]
    assert rows[1]["clients"] == [0, 2, 3]
    ((outlier,),) = [rows[2]["rejected"]]
    assert outlier["partition"] == 2 and outlier["reason"] == "norm" and rows[2]["clients"] == [0, 1, 3]
    assert "x the median" in outlier["detail"] and all(r["failed"] == [] for r in rows)
    assert summary["lost_clients"] == []  # rejected for a round, not lost
    assert summary["rejected_updates"] == {
        "total": 2,
        "by_reason": {"nonfinite": 1, "norm": 1},
        "by_partition": {"1": 1, "2": 1},
    }
    from safetensors.torch import load_file

    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert all(torch.isfinite(t).all() for t in adapter.values())
