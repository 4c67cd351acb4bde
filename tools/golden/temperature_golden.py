#!/usr/bin/env python3
"""Golden values for medkd-eval's temperature scaling, computed with PyTorch the way Guo et al.
(2017) fit it: one scalar T, softmax(logits / T), NLL minimized by LBFGS.

Writes crates/medkd-eval/tests/golden/temperature.json. Two cases of 300 samples: an
overconfident model (logits drawn, labels sampled at a higher temperature, so T > 1) and an
underconfident one (T < 1). Stored: the float32 softmax probabilities at T = 1 (medkd's input),
the labels, the fitted T, the NLL at T = 1 and at the fitted T, and the probabilities at the
fitted T for the first 5 samples.

Run from the repository root: .venv/bin/python tools/golden/temperature_golden.py
"""

import json
import pathlib

import torch

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "medkd-eval" / "tests" / "golden" / "temperature.json"


def case(seed: int, classes: int, scale: float, true_t: float) -> dict:
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(300, classes, generator=g, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(logits / true_t, dim=1), 1, generator=g).squeeze(1)
    probs = torch.softmax(logits, dim=1).float()
    # medkd sees only float32 probabilities: fit on their logarithms, as it does.
    z = probs.double().log()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    nll = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        optimizer.zero_grad()
        loss = nll(z / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    t = log_t.exp().item()
    with torch.no_grad():
        return {
            "num_classes": classes,
            "probs": probs.flatten().tolist(),
            "labels": labels.tolist(),
            "temperature": t,
            "nll_at_1": nll(z, labels).item(),
            "nll_at_t": nll(z / t, labels).item(),
            "scaled_head": torch.softmax(z[:5] / t, dim=1).flatten().tolist(),
        }


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "generator": "tools/golden/temperature_golden.py",
        "torch": torch.__version__,
        "cases": [case(0, 5, 3.0, 2.0), case(1, 3, 0.7, 0.5)],
    }
    OUT.write_text(json.dumps(doc) + "\n")
    print({"temperatures": [c["temperature"] for c in doc["cases"]]})


if __name__ == "__main__":
    main()
