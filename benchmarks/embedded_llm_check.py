"""Does the embedded LLM path work on this Python? Convert the shipped SmolLM2 GGUF from an empty
cache, load it as the LE build does (:func:`recbole_lea.le.llm.load_llm`) and score one prompt.

    python benchmarks/embedded_llm_check.py

Prints the Python and torch versions, the wall time and the next-token top-5 and first logits, so
runs on several Pythons can be compared line by line (docs/compat.md).
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch

from recbole_lea.le.config import LEConfig
from recbole_lea.le.llm import load_llm


def main() -> None:
    start = time.perf_counter()
    cfg = LEConfig(le_model="smollm2", le_cache_dir=tempfile.mkdtemp())  # empty cache: convert again
    model, tok, src, _device, _dtype = load_llm(cfg)
    ids = tok("The user has watched these movies: Toy Story, Heat.", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits[0, -1].float()
    top = torch.topk(logits, 5).indices.tolist()
    first = [round(x, 4) for x in logits[:3].tolist()]
    print(
        f"python {sys.version.split()[0]} torch {torch.__version__}: embedded {src.kind} converted and run in "
        f"{time.perf_counter() - start:.0f} s; next-token top-5 {top}; logit[0:3] {first}"
    )


if __name__ == "__main__":
    main()
