"""Entry point compatible with the reference repository: ``python main.py --model_name SDMI ...``.

Same command, same flags as ``mimax train``. Works from a source checkout without installing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from mimax.console import run

if __name__ == "__main__":
    run(["train", *sys.argv[1:]])
