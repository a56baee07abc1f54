"""m46 in PyTorch, with the same variable names as the Rust crate (src/model.rs).

  python scripts/m46.py check DIR   load DIR/weights.safetensors (ours), run it in eval
                                    mode on DIR/io.safetensors `input` (and `male`), and
                                    compare with our `output`: max abs diff <= 1e-4
  python scripts/m46.py count C H W parameter count for that input
  python scripts/m46.py steps DIR   training steps as DIR/steps.json describes (optimizer
                                    adam or adamw, lr, betas, weight_decay, clip_grad_norm,
                                    steps) with torch.optim, from DIR/before.safetensors
                                    (weights and BatchNorm statistics) over the batches in
                                    DIR/batches.safetensors (x0, y0, x1, ...; train mode,
                                    dropout off, L1 loss); compare every weight and running
                                    statistic with our DIR/after.safetensors: relative
                                    difference (max |ours - torch| / max |torch|) <= 1e-5

The interop tests (tests/interop.rs) write DIR and run `check` and `steps`.
"""

import sys

import torch
from safetensors.torch import load_file
from torch import nn

CHANNELS = [32, 64, 128, 128, 256, 384]


class Block(nn.Module):
    def __init__(self, cin: int, c: int):
        super().__init__()
        self.conv3 = nn.Conv2d(cin, c, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv1 = nn.Conv2d(c, c, 1)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        x = self.bn1(nn.functional.elu(self.conv3(x)))
        x = self.bn2(nn.functional.elu(self.conv1(x)))
        return nn.functional.max_pool2d(x, 3, 2)


class M46(nn.Module):
    def __init__(self, c: int, h: int, w: int, sex_input: bool = False, sex_model: bool = False,
                 dropout: float = 0.3):
        super().__init__()
        self.dropout = dropout
        self.blocks = nn.ModuleList()
        for ch in CHANNELS:
            self.blocks.append(Block(c, ch))
            c, h, w = ch, (h - 3) // 2 + 1, (w - 3) // 2 + 1
        self.sex_input, self.sex_model = sex_input, sex_model
        self.fc1 = nn.Linear(c * h * w + int(sex_input), 2048)
        self.fc2 = nn.Linear(2048, 2048)
        self.fc3 = nn.Linear(2048, 1)

    def forward(self, x, male=None):
        for b in self.blocks:
            x = b(x)
        x = x.flatten(1)
        if self.sex_input:
            x = torch.cat([x, male * 2 - 1], 1)
        x = nn.functional.elu(self.fc1(nn.functional.dropout(x, self.dropout, self.training)))
        x = nn.functional.elu(self.fc2(nn.functional.dropout(x, self.dropout, self.training)))
        return self.fc3(x)  # the sex model's logit; sigmoid for P(male)


def check(d: str) -> int:
    weights = load_file(f"{d}/weights.safetensors")
    io = load_file(f"{d}/io.safetensors")
    x = io["input"]
    sex_input = "male" in io
    model = M46(x.shape[1], x.shape[2], x.shape[3], sex_input=sex_input)
    # BatchNorm's num_batches_tracked is PyTorch-only bookkeeping.
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        print(f"name mismatch: missing {missing}, unexpected {unexpected}")
        return 1
    model.eval()
    with torch.no_grad():
        out = model(x, io.get("male"))
    diff = (out - io["output"]).abs().max().item()
    ok = diff <= 1e-4
    print(f"interop: max abs diff {diff:.3g} over {x.shape[0]} inputs ({'ok' if ok else 'FAILED'}, limit 1e-4)")
    return 0 if ok else 1


def steps(d: str) -> int:
    import json

    spec = json.load(open(f"{d}/steps.json"))
    # One thread on both sides: the same summation order. Adam divides each gradient by its
    # own size, so an element whose gradient is near zero by cancellation takes a full step
    # of either sign: a different thread count alone changes such weights after ten steps
    # by 5% (Adam) to 30% (AdamW) of their largest update, measured torch against torch.
    torch.set_num_threads(1)
    before = load_file(f"{d}/before.safetensors")
    after = load_file(f"{d}/after.safetensors")
    batches = load_file(f"{d}/batches.safetensors")
    n = len([k for k in batches if k.startswith("x")])
    x0 = batches["x0"]
    model = M46(x0.shape[1], x0.shape[2], x0.shape[3], dropout=0.0)
    missing, unexpected = model.load_state_dict(before, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        print(f"name mismatch: missing {missing}, unexpected {unexpected}")
        return 1
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[spec["optimizer"]]
    opt = kind(model.parameters(), lr=spec["lr"], betas=tuple(spec["betas"]),
               weight_decay=spec["weight_decay"])
    model.train()
    for k in range(spec["steps"]):
        loss = nn.functional.l1_loss(model(batches[f"x{k % n}"]), batches[f"y{k % n}"])
        opt.zero_grad()
        loss.backward()
        if spec["clip_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec["clip_grad_norm"])
        opt.step()
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    worst, worst_name, moved = 0.0, "", 0.0
    for k, theirs in state.items():
        ours = after[k]
        rel = ((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-12)).item()
        if rel > worst:
            worst, worst_name = rel, k
        if "running" not in k:
            scale = torch.maximum(before[k].abs().max(), theirs.abs().max())
            moved = max(moved, ((theirs - before[k]).abs().max() / scale).item())
    ok = worst <= 1e-5 and moved > 10 * worst
    print(f"steps: {spec['steps']} {spec['optimizer']} steps, worst relative difference {worst:.3g} "
          f"({worst_name}) over {len(state)} weights and BatchNorm statistics; the steps moved "
          f"weights by up to {moved:.3g} relative ({'ok' if ok else 'FAILED'}, limit 1e-5)")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "steps":
        sys.exit(steps(sys.argv[2]))
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    if len(sys.argv) == 5 and sys.argv[1] == "count":
        m = M46(*map(int, sys.argv[2:]))
        print(sum(p.numel() for p in m.parameters()))
        sys.exit(0)
    sys.exit(__doc__)
