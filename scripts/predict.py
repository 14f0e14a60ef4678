"""``python scripts/predict.py CHECKPOINT PATH...``: the same as ``gdtorch-predict``."""

import sys

from gdtorch.cli import predict_main

if __name__ == "__main__":
    sys.exit(predict_main())
