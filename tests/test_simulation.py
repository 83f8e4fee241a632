"""The Ray backend settings the Simulation Engine is started with."""

from fedmllm.config import RunConfig
from fedmllm.engine.simulation import RAY_INLINE_BYTES, backend_config


def test_a_new_cluster_sends_adapter_sized_messages_inline(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = backend_config(RunConfig(client_cpus=2.0, client_gpus=0.5))
    assert config["client_resources"] == {"num_cpus": 2.0, "num_gpus": 0.5}
    system = config["init_args"]["_system_config"]
    assert system["max_direct_call_object_size"] == RAY_INLINE_BYTES == 8 * 2**20
    assert system["task_rpc_inlined_bytes_limit"] >= RAY_INLINE_BYTES  # one message fits a task's arguments


def test_an_existing_cluster_keeps_its_own_settings(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # ray.init refuses _system_config when joining
    assert backend_config(RunConfig()) == {"client_resources": {"num_cpus": 1.0, "num_gpus": 0.0}}
