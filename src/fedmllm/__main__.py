import sys

from fedmllm.cli import main

sys.exit(main())
