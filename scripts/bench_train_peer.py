"""The PyTorch peer of `bone-age bench train`: the same m46 (scripts/m46.py) and the same
training step, timed phase by phase, in the same run and with the same threads.

  python scripts/bench_train_peer.py --input-shape 1,128,128 --batch 8 --steps 20 \
      --warmup 3 --threads 2 [--device cuda:0 [--autocast] [--channels-last]
      [--cudnn-benchmark]] [--json]

The step: forward in train mode (dropout on), L1 loss on the standardised age, zero_grad
(set to None, PyTorch's default), backward, torch.optim.Adam(lr 2e-5, betas 0.5/0.999)
as the recipe. The images are ready float tensors in [-1, 1] (no batch preparation).
Inference: eval mode under no_grad over the same batches. On CUDA every phase is timed to a
torch.cuda.synchronize(); --autocast runs forward in bfloat16, --channels-last converts the
model and the batches.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from m46 import M46  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input-shape", default="1,128,128")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--autocast", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--cudnn-benchmark", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda and a.cudnn_benchmark
    fmt = torch.channels_last if cuda and a.channels_last else torch.contiguous_format
    c, h, w = (int(v) for v in a.input_shape.split(","))
    torch.manual_seed(42)
    model = M46(c, h, w).to(device, memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=2e-5, betas=(0.5, 0.999))
    n = a.steps + a.warmup
    xs = [(torch.rand(a.batch, c, h, w) * 2 - 1).to(device, memory_format=fmt) for _ in range(n)]
    ys = [(torch.rand(a.batch, 1) * 2 - 1).to(device) for _ in range(n)]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and a.autocast)

    def now():
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter()

    phases = {"prepare_ms": 0.0, "forward_ms": 0.0, "backward_ms": 0.0, "optimizer_ms": 0.0}
    model.train()
    for step in range(n):
        t1 = now()
        with autocast:
            out = model(xs[step])
        loss = torch.nn.functional.l1_loss(out.float(), ys[step])
        loss.item()
        t2 = now()
        opt.zero_grad()
        loss.backward()
        t3 = now()
        opt.step()
        t4 = now()
        if step >= a.warmup:
            phases["forward_ms"] += (t2 - t1) * 1e3
            phases["backward_ms"] += (t3 - t2) * 1e3
            phases["optimizer_ms"] += (t4 - t3) * 1e3
    breakdown = {k: v / a.steps for k, v in phases.items()}
    train = a.batch / (sum(breakdown.values()) / 1e3)
    model.eval()
    start = now()
    with torch.no_grad(), autocast:
        for x in xs[: a.steps]:
            model(x)
    evaluation = a.steps * a.batch / (now() - start)
    report = {
        "train_img_s": train,
        "eval_img_s": evaluation,
        "breakdown": breakdown,
        "versions": f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}",
    }
    if a.json:
        print(json.dumps(report))
    else:
        print(f"train {train:.1f} img/s, inference {evaluation:.1f} img/s, {breakdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
