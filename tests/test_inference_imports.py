"""Inference does not import training or data-generation code."""

import json
import subprocess
import sys

TRAINING_MODULES = ("avatarsync.train", "avatarsync.fkg.task", "avatarsync.data.synth", "avatarsync.tokenizers.task")

SCRIPT = """
import json, sys
from avatarsync.pipeline import Pipeline
pipe = Pipeline.from_pretrained(device="cpu")
assert pipe.tokenizer is not None and pipe.fkg is not None and pipe.interp is not None
print(json.dumps(sorted(m for m in sys.modules if m.startswith("avatarsync"))))
"""


def test_loading_the_shipped_bundle_imports_no_training_code():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    leaked = [m for m in loaded if any(m == t or m.startswith(t + ".") for t in TRAINING_MODULES)]
    assert not leaked, f"Pipeline.from_pretrained imported training code: {leaked}"
