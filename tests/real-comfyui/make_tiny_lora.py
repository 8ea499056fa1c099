#!/usr/bin/env python3
"""Build a tiny random LoRA for the tiny random SD1.5 test checkpoint
(tiny_sd15_random.safetensors, built by shared/comfyui/make_random_ckpt.py).

It uses kohya-style key names that ComfyUI's comfy/lora.py maps onto the model:
  * text encoder: lora_te_text_model_encoder_layers_{N}_self_attn_{q,v}_proj
    -> CLIP-L (real shape, 768 wide) in the checkpoint;
  * UNet: lora_unet_<ldm key with '.' -> '_'>, e.g.
    lora_unet_middle_block_1_transformer_blocks_0_attn1_to_q
    -> diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight
    (the tiny UNet keeps model_channels=320 and has these blocks).
Each target gets <name>.lora_down.weight [rank, in], <name>.lora_up.weight
[out, rank] and <name>.alpha (scalar).  The weights are small random numbers,
so the LoRA really changes the picture (a zero LoRA would be a no-op).
If a key did not match, ComfyUI would log "lora key not loaded: <key>".

Usage (ComfyUI venv's python):
    make_tiny_lora.py [--out PATH] [--rank 4]
Default PATH: ${COMFYUI_RUN_DIR:-~/.cache/comfycord-test/comfyui-run}/models/loras/tiny_random_lora.safetensors
"""
import argparse
import os

import torch
from safetensors.torch import save_file

# (kohya name, in_features, out_features)
TARGETS = [
    ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 768, 768),
    ("lora_te_text_model_encoder_layers_0_self_attn_v_proj", 768, 768),
    ("lora_unet_middle_block_1_transformer_blocks_0_attn1_to_q", 320, 320),
    ("lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k", 768, 320),  # cross-attn: context 768 -> 320
    ("lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_v", 320, 320),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--std", type=float, default=0.05)
    a = ap.parse_args()
    run_dir = os.environ.get("COMFYUI_RUN_DIR", os.path.expanduser("~/.cache/comfycord-test/comfyui-run"))
    out = a.out or os.path.join(run_dir, "models", "loras", "tiny_random_lora.safetensors")
    os.makedirs(os.path.dirname(out), exist_ok=True)

    g = torch.Generator().manual_seed(0)  # deterministic file
    sd = {}
    for name, fin, fout in TARGETS:
        sd[f"{name}.lora_down.weight"] = (torch.randn(a.rank, fin, generator=g) * a.std).half()
        sd[f"{name}.lora_up.weight"] = (torch.randn(fout, a.rank, generator=g) * a.std).half()
        sd[f"{name}.alpha"] = torch.tensor(float(a.rank)).half()  # alpha/rank = 1
    save_file(sd, out, metadata={"ss_network_module": "networks.lora", "comment": "random test LoRA"})
    print(f"wrote {out}: {len(sd)} tensors ({len(TARGETS)} LoRA targets, rank {a.rank})")


if __name__ == "__main__":
    main()
