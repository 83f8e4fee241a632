"""The recipe's handling of lost clients, through its own Transport interface (no engine)."""

import json

import pytest

from fedmllm.config import RunConfig
from fedmllm.errors import FedmllmError
from fedmllm.run import ClientUpdate, RoundResult, federate

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
                result.updates.append(ClientUpdate(job.partition, job.params, 10, 0.5))
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
