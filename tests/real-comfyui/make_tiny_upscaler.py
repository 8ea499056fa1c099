#!/usr/bin/env python3
"""Build a tiny random-weight 4x (or 2x) upscale model for a test ComfyUI server.

The file is a Real-ESRGAN "SRVGGNetCompact" state dict, which spandrel (used by
ComfyUI's UpscaleModelLoader) detects as the "Compact" architecture from the
keys body.0.weight / body.1.weight.  Layout of `body` (a flat ModuleList):

    body.0            Conv2d(in_nc, nf, 3)          weight [nf, in_nc, 3, 3], bias [nf]
    body.1            PReLU(nf)                     weight [nf]
    body.2k / 2k+1    Conv2d(nf, nf, 3) + PReLU(nf)  for k = 1..num_conv
    body.2+2*num_conv Conv2d(nf, out_nc*s*s, 3)     -> PixelShuffle(s)

spandrel derives num_feat from body.0, num_conv from the highest body index and
the scale from the last conv's bias length (out_nc * s * s).  The network adds a
nearest-neighbour upscale of the input to its output, so with small random
weights the result looks like a slightly noisy nearest upscale.

Usage (with the ComfyUI venv's python; needs torch + safetensors):
    make_tiny_upscaler.py [--out PATH] [--scale 4] [--feat 8] [--convs 2] [--verify]
Default PATH: ${COMFYUI_RUN_DIR:-~/.cache/comfycord-test/comfyui-run}/models/upscale_models/tiny_random_x{scale}.safetensors
"""
import argparse
import os

import torch
from safetensors.torch import save_file


def build_state_dict(scale: int, nf: int, num_conv: int, in_nc: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)  # deterministic file

    def conv(out_c, in_c):
        # small weights keep the residual small -> output ~ nearest upscale
        return (torch.randn(out_c, in_c, 3, 3, generator=g) * 0.02,
                torch.zeros(out_c))

    sd = {}
    idx = 0
    chans = [(nf, in_nc)] + [(nf, nf)] * num_conv
    for out_c, in_c in chans:
        w, b = conv(out_c, in_c)
        sd[f"body.{idx}.weight"], sd[f"body.{idx}.bias"] = w, b
        sd[f"body.{idx + 1}.weight"] = torch.full((nf,), 0.25)  # PReLU slopes
        idx += 2
    w, b = conv(in_nc * scale * scale, nf)  # last conv feeds PixelShuffle(scale)
    sd[f"body.{idx}.weight"], sd[f"body.{idx}.bias"] = w, b
    return {k: v.contiguous() for k, v in sd.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=4, choices=[1, 2, 3, 4, 8])
    ap.add_argument("--feat", type=int, default=8)
    ap.add_argument("--convs", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--verify", action="store_true", help="load it back with spandrel and run it")
    a = ap.parse_args()

    run_dir = os.environ.get("COMFYUI_RUN_DIR", os.path.expanduser("~/.cache/comfycord-test/comfyui-run"))
    out = a.out or os.path.join(run_dir, "models", "upscale_models", f"tiny_random_x{a.scale}.safetensors")
    os.makedirs(os.path.dirname(out), exist_ok=True)

    sd = build_state_dict(a.scale, a.feat, a.convs)
    save_file(sd, out)
    n = sum(t.numel() for t in sd.values())
    print(f"wrote {out}: {len(sd)} tensors, {n} params")

    if a.verify:
        from spandrel import ModelLoader  # same call as ComfyUI's UpscaleModelLoader
        from safetensors.torch import load_file
        desc = ModelLoader().load_from_state_dict(load_file(out)).eval()
        y = desc(torch.rand(1, 3, 16, 24))
        print(f"spandrel: arch={desc.architecture.id} scale={desc.scale} out={tuple(y.shape)}")
        assert desc.scale == a.scale and tuple(y.shape) == (1, 3, 16 * a.scale, 24 * a.scale)


if __name__ == "__main__":
    main()
