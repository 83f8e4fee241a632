"""Adding a server rule is one function and one record: a rule registered by a module outside
fedmllm (tests/plugins/half_step.py) runs end to end through the real Flower simulation."""

import json
import sys
from pathlib import Path

import pytest

from fedmllm.cli import main
from fedmllm.config import RunConfig
from fedmllm.engine.client_app import NodeTrust
from fedmllm.errors import FedmllmError
from fedmllm.fl.algorithms import ALGORITHMS, Algorithm, register

PLUGINS = Path(__file__).parent / "plugins"
TINY = [
    "--num-clients", "3", "--clients-per-round", "2", "--rounds", "2", "--synthetic-train", "60",
    "--synthetic-test", "16", "--local-steps", "2", "--no-generate-eval", "--no-eval-views",
]  # fmt: skip


@pytest.fixture
def plugin_path(monkeypatch):
    """The plugin folder on the path of this process and of the simulation's Ray workers."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setenv("PYTHONPATH", str(PLUGINS))
    yield
    sys.modules.pop("half_step", None)  # a later test imports it afresh, and registers it again
    ALGORITHMS.pop("fedavg_half", None)


def run(tmp_path: Path, name: str, *flags: str) -> tuple[dict, str]:
    out = tmp_path / name
    assert main(["run", *TINY, *flags, "--out", str(out)]) == 0
    adapter = (out / "adapter" / "adapter_model.safetensors").read_bytes()
    return json.loads((out / "summary.json").read_text()), adapter.hex()


@pytest.mark.slow
def test_a_plugin_rule_runs_through_the_simulation(tmp_path, plugin_path):
    plugin, plugin_adapter = run(tmp_path, "plugin", "--plugins", "half_step", "--algorithm", "fedavg_half")
    # the same step as FedAvg with eta = 1/2: the same model, to the bit
    fedavg, fedavg_adapter = run(tmp_path, "fedavg", "--algorithm", "fedavg", "--server-lr", "0.5")
    assert plugin["algorithm"] == "fedavg_half"
    assert plugin["final"] == fedavg["final"] and plugin_adapter == fedavg_adapter
    rows = [json.loads(line) for line in (tmp_path / "plugin" / "metrics.jsonl").read_text().splitlines()]
    assert [len(r["clients"]) for r in rows] == [2, 2] and plugin["rejected_updates"]["total"] == 0


def test_an_unknown_algorithm_names_the_registry(plugin_path):
    with pytest.raises(FedmllmError, match="config key 'algorithm': 'fedavg_third' is not one of .*'fedavg'"):
        RunConfig(algorithm="fedavg_third")
    with pytest.raises(FedmllmError, match="config key 'plugins': cannot import 'no_such_plugin'"):
        RunConfig(plugins="no_such_plugin")
    with pytest.raises(FedmllmError, match="config key 'plugins': must be comma-separated module names"):
        RunConfig(plugins="half_step; rm -rf /")


def test_a_record_reads_only_known_options():
    with pytest.raises(FedmllmError, match=r"reads unknown options \['lr_decay'\]"):
        register(Algorithm("fedavg_decay", "x", rule="m:f", reads=("lr_decay",)))
    with pytest.raises(FedmllmError, match="'fedavg' is already registered"):
        register(Algorithm("fedavg", "x", rule="m:f"))
    assert "fedavg_decay" not in ALGORITHMS


def test_a_deployed_node_imports_only_the_plugins_it_allows():
    run_msg = {"plugins": "half_step, other"}
    with pytest.raises(
        FedmllmError, match=r"partition 3: this node imports only the plugins \[\].*\['half_step', 'other'\]"
    ):
        NodeTrust.from_node_config({}).check_plugins(run_msg, 3)
    with pytest.raises(FedmllmError, match=r"asks for \['other'\]"):
        NodeTrust.from_node_config({"plugins": "half_step"}).check_plugins(run_msg, 3)
    NodeTrust.from_node_config({"plugins": "half_step,other"}).check_plugins(run_msg, 3)  # allowed: no error
    NodeTrust.from_node_config({}).check_plugins({"plugins": ""}, 3)


def test_the_docs_table_is_the_records():
    from fedmllm.fl.algorithms import markdown_table

    doc = (Path(__file__).parents[1] / "docs" / "algorithms.md").read_text(encoding="utf-8")
    assert markdown_table() in doc, "regenerate docs/algorithms.md's table from fl.algorithms.markdown_table()"
