"""client_data = "node": each SuperNode reads the data its own node config names."""

import pytest

from fedmllm.config import RunConfig
from fedmllm.errors import FedmllmError
from fedmllm.scenarios import split
from fedmllm.scenarios.node_data import node_samples


def client_samples(run, node):
    return node_samples(run, node, 3)


def context(**node):
    return {"partition-id": 3, **node}


RUN = {**RunConfig(client_data="node").to_dict()}


def test_node_reads_its_native_folder_with_its_modality(memes_dir):
    both = client_samples(RUN, context(**{"data-dir": str(memes_dir)}))
    assert len(both) == 60 and all(s.image is not None and s.text is not None for s in both)
    text_only = client_samples(RUN, context(**{"data-dir": str(memes_dir), "modality": "text"}))
    assert [s.id for s in text_only] == [s.id for s in both]
    assert all(s.image is None and s.text is not None for s in text_only)


def test_node_reads_a_prepared_shard(tmp_path, memes_dir):
    from fedmllm.data import registry

    samples = registry.load_split("hateful_memes", memes_dir, "train")[:5]
    split.write([samples], tmp_path)
    got = client_samples(RUN, context(shard=str(split.shard_path(tmp_path, 0))))
    assert [s.id for s in got] == [s.id for s in samples]


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({}, "partition 3: node config needs 'shard' or 'data-dir'"),
        ({"data-dir": "/nonexistent", "modality": "audio"}, "'modality' = 'audio'"),
    ],
)
def test_node_config_errors_name_the_key(node, message):
    with pytest.raises(FedmllmError) as error:
        client_samples(RUN, context(**node))
    assert message in str(error.value)
