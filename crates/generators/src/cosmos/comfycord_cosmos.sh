#!/usr/bin/env bash
# comfycord's Cosmos wrapper, run inside the container from /workspace (the cosmos-transfer1
# checkout). Uploaded by the bot before every job, so it is always the version the bot expects.
#   comfycord_cosmos.sh KIND JOB_ID NUM_GPU CUDA_DEVICES CHECKPOINT_DIR
# Every user value is in runs/JOB_ID/inputs/spec.json; nothing user-written is on this line.
# All output, stdout and stderr, goes to outputs/run_JOB_ID/run.log and to docker's log; the
# last line of run.log is always "[COSMOS_COMPLETE] exit_code=N".
set -u
kind="$1"
job="$2"
num_gpu="${3:-1}"
cuda="${4:-0}"
checkpoints="${5:-./checkpoints}"
out="outputs/run_${job}"
spec="runs/${job}/inputs/spec.json"
mkdir -p "$out"
export CUDA_VISIBLE_DEVICES="$cuda" CHECKPOINT_DIR="$checkpoints" NUM_GPU="$num_gpu"
PYTHONPATH="$(pwd)"
export PYTHONPATH
case "$kind" in
  transfer) extra=(--offload_text_encoder_model --offload_guardrail_models) ;;
  upscale) extra=(--num_steps 10 --offload_text_encoder_model) ;;
  *) echo "unknown job kind: $kind" >&2; echo "[COSMOS_COMPLETE] exit_code=2" >> "$out/run.log"; exit 2 ;;
esac
torchrun --nproc_per_node="$num_gpu" --nnodes=1 --node_rank=0 \
  cosmos_transfer1/diffusion/inference/transfer.py \
  --checkpoint_dir "$CHECKPOINT_DIR" \
  --video_save_folder "$out" \
  --controlnet_specs "$spec" \
  --num_gpus "$num_gpu" \
  "${extra[@]}" 2>&1 | tee "$out/run.log"
code=${PIPESTATUS[0]}
echo "[COSMOS_COMPLETE] exit_code=${code}" >> "$out/run.log"
exit "$code"
