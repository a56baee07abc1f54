"""m46 in PyTorch, with the same variable names as the Rust crate (src/model.rs).

  python scripts/m46.py check DIR   load DIR/weights.safetensors (ours), run it in eval
                                    mode on DIR/io.safetensors `input` (and `male`), and
                                    compare with our `output`: max abs diff <= 1e-4
  python scripts/m46.py count C H W parameter count for that input
  python scripts/m46.py adam DIR    two torch.optim.Adam steps (lr 1e-3, betas 0.5/0.999)
                                    from DIR/before.safetensors with the gradients in
                                    DIR/grads1/grads2.safetensors; compare with our
                                    DIR/after.safetensors: max abs diff <= 1e-6

The interop test (tests/interop.rs) writes DIR and runs `check`.
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
    def __init__(self, c: int, h: int, w: int, sex_input: bool = False, sex_model: bool = False):
        super().__init__()
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
        x = nn.functional.elu(self.fc1(nn.functional.dropout(x, 0.3, self.training)))
        x = nn.functional.elu(self.fc2(nn.functional.dropout(x, 0.3, self.training)))
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


def adam(d: str) -> int:
    before = load_file(f"{d}/before.safetensors")
    after = load_file(f"{d}/after.safetensors")
    grads = [load_file(f"{d}/grads{k}.safetensors") for k in (1, 2)]
    params = {k: torch.nn.Parameter(v.clone()) for k, v in before.items()}
    opt = torch.optim.Adam(params.values(), lr=1e-3, betas=(0.5, 0.999))
    for g in grads:
        for k, p in params.items():
            p.grad = g[k]
        opt.step()
    diff = max((params[k].detach() - after[k]).abs().max().item() for k in params)
    moved = max((after[k] - before[k]).abs().max().item() for k in params)
    ok = diff <= 1e-6 and moved > 1e-4
    print(f"adam: max abs diff {diff:.3g} after two steps that moved weights by up to {moved:.3g} "
          f"({'ok' if ok else 'FAILED'}, limit 1e-6)")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "adam":
        sys.exit(adam(sys.argv[2]))
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    if len(sys.argv) == 5 and sys.argv[1] == "count":
        m = M46(*map(int, sys.argv[2:]))
        print(sum(p.numel() for p in m.parameters()))
        sys.exit(0)
    sys.exit(__doc__)
