"""`fedmllm` that SIGKILLs itself inside `checkpoint.save` of one round: after that round's
checkpoint is written and fsynced to its .tmp file, before the rename that publishes it.

    python tests/kill_in_checkpoint.py ROUND run [fedmllm run flags...]

A test process cannot monkeypatch a subprocess, so this script does it before calling the CLI:
the kill point lives here, in the tests, and `fedmllm.checkpoint` knows nothing of it.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from fedmllm import checkpoint
from fedmllm.cli import main


def die_before_publishing(round_: int) -> None:
    """Replace `checkpoint.publish` so the save of round `round_` kills the process instead."""
    publish = checkpoint.publish

    def dying(tmp: Path, path: Path) -> None:
        _, meta = checkpoint.read(tmp)  # the product's own reader: the .tmp is a whole checkpoint here
        if meta["round"] == round_:
            os.kill(os.getpid(), signal.SIGKILL)
        publish(tmp, path)

    checkpoint.publish = dying


if __name__ == "__main__":
    die_before_publishing(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
