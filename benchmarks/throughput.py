"""Training throughput: the harness (Lightning + LRControl + TensorBoard + MLflow) vs a plain PyTorch loop over the
same model and the same batches, and the CIFAR batch-augmentation pipeline vs a torchvision per-sample one.

Run with `make bench`. Writes benchmarks/results.md and benchmarks/results.json (a list of
{name, value, unit, target, better}). Each measurement is the best of `--repeats` runs (noise on a shared CPU only
ever slows a run down).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch
from results_io import merge

from adaptive_lr.config import compose
from adaptive_lr.runner import build, run
from adaptive_lr.runtime import configure_runtime

ROOT = Path(__file__).resolve().parents[1]

# task config, epochs, harness/plain target ratio
CASES = [
    ("synthetic_mnist", 2, 0.8, "MNIST-shaped MLP 784-128-64-10, dropout 0.5, batch 64 (synthetic, 60k train / 10k val)"),
    ("digits", 20, 0.8, "digits MLP 64-64-10, batch 64"),
    ("synthetic_cifar", 2, 0.95, "small CNN on CIFAR-shaped tensors, batch 64 (synthetic data)"),
]


def plain_loop(cfg, epochs: int) -> float:
    """The reference: the same model, optimizer and TensorBatchLoader batches; train + validate each epoch."""
    torch.manual_seed(cfg.seed)
    parts = build(cfg)
    dm, module = parts["datamodule"], parts["module"]
    dm.setup("fit")
    model, loss_fn = module.model, module.loss_fn
    opt = module.configure_optimizers()
    train, val = dm.train_dataloader(), dm.val_dataloader()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        train.sampler.set_epoch(epoch)
        model.train()
        for x, y in train:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            correct = sum((model(x).argmax(1) == y).sum() for x, y in val)
        float(correct)  # one sync per epoch, as the harness does
    return time.perf_counter() - t0


def harness(cfg) -> float:
    return run(cfg).train_seconds  # the epochs; Trainer.fit's one-off setup is not per-sample work


def batch_vs_per_sample(n: int = 4096, batch: int = 64) -> tuple[float, float]:
    """Samples/s of (whole-batch crop+flip+normalise on uint8 tensors, torchvision per-sample PIL transforms)."""
    import torchvision.transforms as T
    from PIL import Image

    from adaptive_lr.data.augment import Normalize, random_crop_flip
    from adaptive_lr.data.tensor_loader import TensorBatchLoader

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    norm = Normalize(mean, std)
    loader = TensorBatchLoader((images, labels), batch, shuffle=True, transform=lambda x, gen: norm(random_crop_flip(x, gen)))
    t0 = time.perf_counter()
    for _ in loader:
        pass
    fast = n / (time.perf_counter() - t0)

    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return tf(pil[i]), labels[i]

    dl = torch.utils.data.DataLoader(DS(), batch_size=batch, shuffle=True, num_workers=0)
    t0 = time.perf_counter()
    for _ in dl:
        pass
    slow = n / (time.perf_counter() - t0)
    return fast, slow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scheduler", default="heuristic", help="scheduler config the harness runs with")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args()
    import lightning  # noqa: F401  (imported first so both sides run under the same process settings)

    configure_runtime()
    results, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for task, epochs, target, label in CASES:
            cfg = compose([f"task={task}", f"scheduler={args.scheduler}", f"trainer.max_epochs={epochs}",
                           "experiment=bench", f"paths.root={tmp}", "logger.log_every_n_steps=50"])
            n_train = len(build(cfg)["datamodule"].splits[0][0])
            plain_loop(cfg, 1)  # warm-up: first-call costs (allocator, dispatcher, torch.compile probes)
            harness(compose([f"task={task}", "trainer.max_epochs=1", "experiment=bench", f"paths.root={tmp}"]))
            # interleaved, best of `repeats` each: load from elsewhere on a shared CPU only ever slows a run down
            pairs = [(plain_loop(cfg, epochs), harness(cfg)) for _ in range(args.repeats)]
            t_plain, t_harness = min(p for p, _ in pairs), min(h for _, h in pairs)
            sps_plain, sps_harness = n_train * epochs / t_plain, n_train * epochs / t_harness
            ratio = sps_harness / sps_plain
            print(f"{task}: plain {sps_plain:,.0f} samples/s, harness {sps_harness:,.0f} samples/s, "
                  f"ratio {ratio:.3f} (target >= {target})", flush=True)
            rows.append((label, sps_plain, sps_harness, ratio, target))
            results += [
                {"name": f"{task}/plain_loop_samples_per_s", "value": round(sps_plain, 1), "unit": "samples/s",
                 "target": None, "better": "higher"},
                {"name": f"{task}/harness_samples_per_s", "value": round(sps_harness, 1), "unit": "samples/s",
                 "target": None, "better": "higher"},
                {"name": f"{task}/harness_vs_plain", "value": round(ratio, 3), "unit": "x", "target": target,
                 "better": "higher"},
            ]
    fast, slow = max(batch_vs_per_sample() for _ in range(args.repeats))
    print(f"cifar pipeline: batch {fast:,.0f} samples/s, per-sample torchvision {slow:,.0f} samples/s", flush=True)
    results += [
        {"name": "cifar_pipeline/batch_samples_per_s", "value": round(fast, 1), "unit": "samples/s", "target": None,
         "better": "higher"},
        {"name": "cifar_pipeline/per_sample_samples_per_s", "value": round(slow, 1), "unit": "samples/s",
         "target": None, "better": "higher"},
        {"name": "cifar_pipeline/batch_vs_per_sample", "value": round(fast / slow, 2), "unit": "x", "target": 10,
         "better": "higher"},
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    merge(results, [f"{task}/" for task, *_ in CASES] + ["cifar_pipeline/"], args.out / "results.json")
    lines = [
        "# Throughput benchmark",
        "",
        f"Measured by `make bench` (`python benchmarks/throughput.py`) on {platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU only. The harness runs with "
        f"TensorBoard + MLflow logging and the `{args.scheduler}` scheduler callback; both sides train and validate "
        f"every epoch on the same batches; best of {args.repeats}.",
        "",
        "| task | plain loop (samples/s) | harness (samples/s) | harness / plain | target | met |",
        "| --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for label, p, h, r, t in rows:
        lines.append(f"| {label} | {p:,.0f} | {h:,.0f} | {r:.3f} | >= {t} | {'yes' if r >= t else 'NO'} |")
    lines += ["", "| data pipeline (CIFAR-shaped uint8, crop+flip+normalise) | samples/s |", "| --- | ---: |",
              f"| whole-batch tensor ops (`adaptive_lr.data.augment`) | {fast:,.0f} |",
              f"| torchvision per-sample PIL transforms, DataLoader num_workers=0 | {slow:,.0f} |",
              f"| ratio (target >= 10) | {fast / slow:.1f}x |", ""]
    (args.out / "results.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'results.md'} and results.json")


if __name__ == "__main__":
    main()
