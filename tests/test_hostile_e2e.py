"""Hostile clients through the real stack: Flower's Simulation Engine, the codec, the screen.

Every attack of `fl/attacks.py` is driven end to end: the attacker trains honestly, then sends
its hostile reply through the real ClientApp and Flower path. The run must finish, the bad
updates must be rejected with the right reason (or, for the attacks no screen can see, taken
as any update), and the model must stay finite.
"""

import json
import time

import pytest
import torch
from flwr.app import ConfigRecord, Context, MessageType, Metadata, RecordDict
from flwr.app.message.message import make_message
from safetensors.torch import load_file

from fedmllm.config import RunConfig
from fedmllm.engine.client_app import NodeTrust, make_app
from fedmllm.engine.records import to_arrays
from fedmllm.engine.simulation import simulate
from fedmllm.errors import FedmllmError
from fedmllm.fl import attacks

# every client is sampled every round, so the attacker sends in every round
SMALL = dict(num_clients=4, clients_per_round=4, rounds=2, local_steps=1, synthetic_train=80, synthetic_test=16,
             generate_eval=False, eval_views=False, partition="iid", scenario="none", attackers=1)  # fmt: skip


def hostile_run(tmp_path, attack, **extra):
    cfg = RunConfig(**{**SMALL, **extra}, attack=attack, out=str(tmp_path))
    summary = simulate(cfg, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (attacker,) = summary["attack"]["attackers"]
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert all(torch.isfinite(t).all() for t in adapter.values())
    assert len(rows) == cfg.rounds and all(r["failed"] == [] for r in rows)  # nobody lost, nothing stopped
    return summary, rows, attacker


# attack -> the reason the screen gives for the attacker's update in every round
REJECTED = {
    "nan": "nonfinite",
    "weight_inflation": "num_examples",
    "identity_spoof": "identity",
    "scale": "norm",
    "gaussian": "norm",
}


@pytest.mark.slow
@pytest.mark.parametrize("attack", sorted(REJECTED))
def test_each_attack_is_rejected_with_its_reason_and_the_run_finishes(tmp_path, attack):
    summary, rows, attacker = hostile_run(tmp_path, attack, attack_scale=100.0)
    for row in rows:
        assert [(r["partition"], r["reason"]) for r in row["rejected"]] == [(attacker, REJECTED[attack])]
        assert attacker not in row["clients"] and len(row["clients"]) == 3
    assert summary["rejected_updates"]["total"] == 2
    assert summary["rejected_updates"]["by_partition"] == {str(attacker): 2}
    assert summary["skipped_rounds"] == []


@pytest.mark.slow
def test_sign_flip_passes_the_screen_and_needs_a_robust_rule(tmp_path):
    """A reversed update has an honest norm: no screen can tell it, which is what the robust
    rules are for (docs/robustness.md)."""
    summary, rows, attacker = hostile_run(tmp_path, "sign_flip")
    assert summary["rejected_updates"]["total"] == 0
    assert all(attacker in row["clients"] for row in rows)


@pytest.mark.slow
def test_every_malformed_reply_is_rejected_at_decode_or_screen(tmp_path):
    rounds = len(attacks.MALFORMED)
    summary, rows, attacker = hostile_run(tmp_path, "malformed", rounds=rounds)
    reasons = []
    for row in rows:
        ((partition, reason, detail),) = [(r["partition"], r["reason"], r["detail"]) for r in row["rejected"]]
        assert partition == attacker and detail
        reasons.append(reason)
    assert set(reasons) <= {"decode", "tensors", "num_examples", "metrics", "steps"}
    assert summary["rejected_updates"]["total"] == rounds


def train_message(run: dict):
    params = {"w": torch.zeros(2)}
    content = {"arrays": to_arrays(params), "run": ConfigRecord(run), "round": ConfigRecord({"round": 1, "lr": 1e-3})}
    # as a SuperNode receives it (a Message made outside a Flower process needs its metadata)
    metadata = Metadata(1, "m1", 0, 1, "", "", time.time(), 60.0, MessageType.TRAIN)
    return make_message(metadata, RecordDict(content))


def context(node_config: dict) -> Context:
    return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config={})


def refusal(reply) -> str:
    assert reply.has_error() and not reply.has_content()
    return reply.error.reason


def test_a_node_without_remote_code_refuses_a_server_that_asks_for_it():
    """Through Flower's own ClientApp call, as a SuperNode makes it: the reply is an error whose
    reason is the refusal (what the server logs for that node), never a training step."""
    run = RunConfig(trust_remote_code=True).to_dict()
    reason = refusal(make_app()(train_message(run), context({"partition-id": 0})))
    assert "partition 0: this node does not run a checkpoint's own code" in reason
    assert "trust-remote-code=true" in reason
    allowed = make_app(NodeTrust(trust_remote_code=False))  # the owner said no, whatever the node config
    reply = allowed(train_message(run), context({"partition-id": 0, "trust-remote-code": True}))
    assert "does not run a checkpoint's own code" in refusal(reply)


@pytest.mark.slow
def test_refusing_nodes_are_named_in_the_server_log_and_error(tmp_path, monkeypatch, caplog):
    import fedmllm.engine.simulation as simulation

    build = simulation.make_app
    monkeypatch.setattr(simulation, "make_app", lambda trust: build(NodeTrust(trust_remote_code=False)))
    cfg = RunConfig(**{**SMALL, "attackers": 0, "num_clients": 2, "clients_per_round": 2, "rounds": 1},
                    trust_remote_code=True, out=str(tmp_path))  # fmt: skip
    with pytest.raises(FedmllmError, match=r"round 1: 0 client\(s\) replied.*does not run a checkpoint's own code"):
        simulate(cfg, tmp_path)
    assert "(partition 0): partition 0: this node does not run a checkpoint's own code" in caplog.text


def test_a_node_loads_only_the_models_it_allows():
    run = RunConfig(model="tiny").to_dict()
    reply = make_app()(train_message(run), context({"partition-id": 0, "models": "/models/llava"}))
    assert "loads only the models ['/models/llava'] (node config 'models'), not 'tiny'" in refusal(reply)
    with pytest.raises(FedmllmError, match="node config 'trust-remote-code': 'yes'"):
        NodeTrust.from_node_config({"trust-remote-code": "yes"})
    trust = NodeTrust.from_node_config({"trust-remote-code": "true", "models": "tiny, x"})
    assert trust == NodeTrust(True, ("tiny", "x"))


def test_the_progress_line_names_rejected_clients_and_skipped_rounds(capsys):
    from fedmllm.progress import print_round

    row = {"round": 2, "clients": [], "train_loss": None, "bytes_sent": 0, "bytes_received": 0, "seconds": 1.0,
           "rejected": [{"partition": 3, "reason": "identity", "detail": "..."}], "auc": 0.5}  # fmt: skip
    print_round(row, 5)
    assert capsys.readouterr().out == (
        "round   2/5 | clients [] (rejected [3]) | loss skipped (no usable update) | auc 0.500 | 1.0 s | 0.00 MB\n"
    )


def test_a_node_flag_is_true_false_or_an_error():
    from fedmllm.scenarios.node_data import node_flag

    assert node_flag({}, "allow-external-paths") is False
    assert node_flag({"allow-external-paths": "True"}, "allow-external-paths") is True
    with pytest.raises(FedmllmError, match="node config 'allow-external-paths': 'yes' is not true or false"):
        node_flag({"allow-external-paths": "yes"}, "allow-external-paths")
