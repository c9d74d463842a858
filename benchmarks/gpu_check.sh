#!/usr/bin/env bash
# Usage: bash benchmarks/gpu_check.sh [OUTPUT_FILE]
#   default OUTPUT_FILE: $OUT/gpu_check.txt when $OUT is set, else ./gpu_check.txt
#
# Proves the GPU path on a fresh CUDA machine in one unattended go (at most ~8 minutes: every stage has a time limit
# within one overall budget, GPU_CHECK_BUDGET seconds, default 470), writing everything it measures to one file:
#   1. a fresh virtual environment from this working tree (pip install -e ".[dev]"; a CUDA torch already on the
#      machine is reused through --system-site-packages, otherwise pip fetches one; offline, the requirements already
#      present are used with the working tree on PYTHONPATH)
#   2. the tests that need CUDA (pytest -m cuda: GPU vs CPU steps, no host sync inside a step, speed modes, LANModel)
#   3. benchmarks/device_agreement.py: LAN and FullTrainable on GPU vs CPU, per-step PSNR/SSIM, TF32 on and off
#   4. benchmarks/torchrun_smoke.py: torchrun (nccl) training with --auto_resume and a LANModel run, resumed
#   5. benchmarks/throughput.py: the released DnCNN and Restormer configurations, ours vs the official loop (default
#      mode and bf16 at B = 1 and 4; then torch.compile at B = 1, last, since compiling Restormer takes minutes)
# Nothing to type; the stages run in that order, each one's exit status and time are summarised at the end.
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
DEFAULT_OUT=./gpu_check.txt
if [ -n "${OUT:-}" ]; then DEFAULT_OUT="$OUT/gpu_check.txt"; fi
OUTFILE=${1:-$DEFAULT_OUT}
mkdir -p "$(dirname "$OUTFILE")"
exec > >(tee "$OUTFILE") 2>&1
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-470}
VENV=${GPU_CHECK_VENV:-$(mktemp -d /tmp/lan_gpu_check.XXXXXX)/venv}  # an existing venv given here is used as it is
SUMMARY=()

stage() {  # stage NAME LIMIT_SECONDS command...: runs within what is left of the budget (10 s kept for the summary)
    local name=$1 limit=$2 left t0 rc
    shift 2
    left=$((START + BUDGET - 10 - $(date +%s)))
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    if [ "$limit" -le 5 ]; then
        echo "=== $name: skipped (budget spent)"
        SUMMARY+=("$name: skipped (budget spent)")
        return
    fi
    echo
    echo "=== $name (limit ${limit} s)"
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then rc="$rc (time limit)"; fi
    echo "=== $name: exit $rc, $(($(date +%s) - t0)) s"
    SUMMARY+=("$name: exit $rc, $(($(date +%s) - t0)) s")
}

install() {
    if [ -f "$VENV/bin/activate" ]; then
        echo "reusing $VENV as it is (nothing installed into it)"
        return 0
    fi
    if ! python3 -m venv --system-site-packages "$VENV"; then
        echo "python3 -m venv failed: installing into the current Python's user site instead"
        python3 -m pip install -q --user -e "$REPO[dev]"
        return
    fi
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
    if python -m pip install -q --disable-pip-version-check -e "$REPO[dev]"; then
        return 0
    fi
    echo "pip install -e .[dev] failed (offline?): using what is installed, with the working tree on PYTHONPATH"
    python -c "import torch, basicsr, cv2, lmdb, mmengine, skimage, einops, pytest" 2>&1
}
export -f install
export VENV REPO

echo "gpu_check: $(date -u '+%Y-%m-%dT%H:%M:%SZ'), $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no git')" \
    "$(git -C "$REPO" status --porcelain 2>/dev/null | grep -q . && echo '(working tree with changes)')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || echo "nvidia-smi not found"
echo "CPU: $(nproc) cores; $(python3 --version 2>&1)"

stage "install" 240 bash -c install
# shellcheck disable=SC1091
source "$VENV/bin/activate" 2>/dev/null || true
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
python - <<'EOF'
import torch
print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, '
      f'devices: {[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}')
if not torch.cuda.is_available():
    print('NO CUDA DEVICE: the CUDA tests below are skipped and the benchmarks run on the CPU')
EOF

stage "pytest -m cuda" 120 python -m pytest -q -m cuda -p no:cacheprovider -rs tests
stage "device agreement (GPU vs CPU)" 90 python benchmarks/device_agreement.py --images 2 --steps 10
stage "torchrun smoke (nccl)" 100 python benchmarks/torchrun_smoke.py --nproc 1
stage "throughput, default mode and bf16 (released configs)" 150 python benchmarks/throughput.py --device cuda \
    --configs full --archs DnCNN Restormer --losses ZSN2NLoss --images 4 --batch-sizes 1 4 --modes default bf16 \
    --rounds 2
# compiling the released Restormer takes minutes: last, so that a time limit cuts only this part
stage "throughput, compile (released configs)" 200 python benchmarks/throughput.py --device cuda --configs full \
    --archs DnCNN Restormer --losses ZSN2NLoss --images 4 --batch-sizes 1 --modes default compile --rounds 2

echo
echo "=== summary ($(($(date +%s) - START)) s in all; output: $OUTFILE)"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
