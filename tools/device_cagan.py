"""Full-budget check of notebook 50_cagan on a GPU: the four experiments of Cho 2025 Sec. 4.1 at larger budgets than
the CPU docs profile, with the thesis's 512-unit layers for the clusters and the conv backbone for the digits.

Every model trains in its own process (16 at once share one GPU). Each first measures its speed on a throwaway copy
and then trains for min(target steps, what fits in the time budget), so the run ends on time; the steps reached are
reported with the results. Usage: python tools/device_cagan.py OUT_DIR [BUDGET_SECONDS [EXPERIMENTS]]
"""
import json
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

CLUSTER_STEPS, DIGIT_STEPS = 50_000, 30_000
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def specs():
    out = []
    for lam in (0.01, 1.0, 100.0):
        out.append(dict(exp="fig8", name=f"revised ACGAN l={lam:g}", cls="ACGAN", kw=dict(lambda_cls=lam)))
    out.append(dict(exp="fig8", name="CAGAN", cls="CAGAN", kw={}))
    imb = dict(class_weights=[0.1, 0.2, 0.3, 0.4], minibatch_std=4)
    for mixed in (False, True):
        out.append(dict(exp="fig11", name="ACGAN" + " + mixed" * mixed, cls="ACGAN", kw=dict(lambda_cls=1.0, mixed_batch=mixed, **imb)))
        out.append(dict(exp="fig11", name="CAGAN" + " + mixed" * mixed, cls="CAGAN", kw=dict(mixed_batch=mixed, **imb)))
    conv = dict(backbone="conv", channels=64)
    for lam in (0.01, 1.0, 100.0):
        out.append(dict(exp="fig9", name=f"revised ACGAN l={lam:g}", cls="ACGAN", kw=dict(lambda_cls=lam, **conv)))
    out.append(dict(exp="fig9", name="CAGAN", cls="CAGAN", kw=conv))
    for mixed in (False, True):
        out.append(dict(exp="fig16", name="ACGAN" + " + mixed" * mixed, cls="ACGAN", kw=dict(lambda_cls=1.0, mixed_batch=mixed, minibatch_std=4, **conv)))
        out.append(dict(exp="fig16", name="CAGAN" + " + mixed" * mixed, cls="CAGAN", kw=dict(mixed_batch=mixed, minibatch_std=4, **conv)))
    return out


def data(exp):
    from invgen_lit.cagan import resample_classes
    from invgen_lit.data import GaussianClusters, digits
    if exp == "fig8": toy = GaussianClusters()
    elif exp == "fig11": toy = GaussianClusters(weights=[0.4, 0.3, 0.2, 0.1])
    else:
        X, y = digits(16)
        if exp == "fig16": X, y = resample_classes(X, y, [0.55] + [0.05] * 9, 4000, seed=0)
        return None, X, y
    X, y = toy.sample(20_000, return_labels=True, seed=0)
    return toy, X, y


def evaluate(exp, model, toy):
    import numpy as np
    from invgen_lit.cagan import bayes_posterior, near_boundary_fraction
    from invgen_lit.data import digits
    from invgen_lit.metrics import digit_features, frechet_digit_distance, mmd2_unbiased
    gen = torch.Generator().manual_seed(1)
    if toy is not None:
        n = 2000
        yk = torch.arange(4).repeat_interleave(n)
        fake = model.sample(len(yk), y=yk, generator=gen).cpu()
        xr, yr = toy.sample(40 * n, return_labels=True, seed=3)
        real = torch.cat([xr[yr == k][:n] for k in range(4)])
        mmd = [mmd2_unbiased(fake[yk == k], real[yk == k]) for k in range(4)]
        return {"mean MMD2": float(np.mean(mmd)), "MMD2 per class": mmd, "near boundary (fake)": near_boundary_fraction(fake, toy),
                "near boundary (real)": near_boundary_fraction(real, toy),
                "condition accuracy": float((bayes_posterior(toy, fake).argmax(1) == yk).double().mean())}
    X, y = digits(16)
    net = digit_features(16)
    yk = torch.arange(10).repeat_interleave(200)
    fake = model.sample(len(yk), y=yk, generator=gen).cpu()
    per_class = [frechet_digit_distance(fake[yk == k], X[y == k], net) for k in range(10)]
    zero = float((net.head(net.features(fake)).argmax(1) == 0).double().mean())
    return {"FDD": frechet_digit_distance(fake, X, net), "mean per-class FDD": float(np.mean(per_class)),
            "condition accuracy": net.accuracy(fake, yk), "share classified 0": zero}


def worker(args):
    spec, budget = args
    torch.set_num_threads(1)
    from invgen_lit import cagan
    from invgen_lit.core import set_seed
    toy, X, y = data(spec["exp"])
    shape = 2 if toy is not None else (1, 16, 16)
    n_classes = 4 if toy is not None else 10
    hidden = dict(hidden=(512, 512, 512, 512)) if toy is not None else {}
    build = lambda: getattr(cagan, spec["cls"])(shape, n_classes, **hidden, **spec["kw"]).to(DEVICE)
    target = CLUSTER_STEPS if toy is not None else DIGIT_STEPS
    probe, t = build(), time.time()
    probe.fit(X, y, steps=150, progress=False, device=DEVICE); torch.cuda.synchronize() if torch.cuda.is_available() else None
    rate = 150 / (time.time() - t)
    steps = int(min(target, rate * budget * 0.85))
    set_seed(0)
    t = time.time()
    model = build().fit(X, y, steps=steps, progress=False, device=DEVICE)
    seconds = time.time() - t
    return spec | {"steps": steps, "target steps": target, "train s": seconds, "steps/s": steps / seconds} | evaluate(spec["exp"], model, toy)


def main():
    out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
    budget = float(sys.argv[2]) if len(sys.argv) > 2 else 300.0
    print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", torch.__version__, flush=True)
    from invgen_lit.metrics import digit_features
    digit_features(16)   # train and cache the feature net once, before the workers read it
    t = time.time()
    only = sys.argv[3].split(",") if len(sys.argv) > 3 else None   # e.g. fig8,fig16: a subset of the experiments
    todo = [s for s in specs() if only is None or s["exp"] in only]
    with mp.get_context("spawn").Pool(min(16, len(todo))) as pool:
        results = []
        for r in pool.imap_unordered(worker, [(s, budget) for s in todo]):
            print(json.dumps(r), flush=True)
            results.append(r)
    (out / "cagan_device.json").write_text(json.dumps(results, indent=1))
    print(f"all done in {time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
