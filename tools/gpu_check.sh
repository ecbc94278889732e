#!/usr/bin/env bash
# The GPU measurements in one command, for a machine with one NVIDIA GPU and a Python that has torch:
#
#   bash tools/gpu_check.sh [SECONDS]
#
# 1. the machine: GPU, driver, Python, torch, and whether mvd_lib imports with the packages that are there;
# 2. bench: seconds per step of each run type of the gpu profile at its own batch size (bf16), and of distillation
#    at the laptop preset (the README's speed table), with each gpu run type's steps times that rate;
# 3. the gpu profile's Table 1 chain from scratch (`tools/time_profile.py gpu --no-artifacts`: both teachers, the
#    three Table 1 students, Figure 3), stopped after SECONDS (default 420) if unfinished; the runs that finished
#    are listed from their records either way, so a stopped chain still reports what it trained and how long.
#
# Everything it prints goes to $OUT/log.txt as well (OUT defaults to gpu_check/), with the chain's JSON and the run
# records' times. It downloads nothing and writes its runs under a temporary folder. To try it on a CPU first:
#   MVD_CHECK_DEVICE=cpu MVD_CHECK_PROFILE=smoke bash tools/gpu_check.sh 120
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-gpu_check}
PY=${PYTHON:-python3}
DEVICE=${MVD_CHECK_DEVICE:-cuda}
PROFILE=${MVD_CHECK_PROFILE:-gpu}
LIMIT=${1:-420}
mkdir -p "$OUT"
RUNS=$(mktemp -d)/runs
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec > >(tee "$OUT/log.txt") 2>&1
start=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - start )) s)"; }

stamp "machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'EOF' || { echo "mvd_lib does not import here: nothing else is measured"; exit 2; }
import importlib, platform
import mvd_lib  # noqa: F401  (first: its torchvision guard keeps `import timm` working)
import torch
print(f"python {platform.python_version()}, torch {torch.__version__}, cuda {torch.version.cuda}, "
      f"gpu {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
for name in ("numpy", "sklearn", "timm", "tqdm", "threadpoolctl", "matplotlib", "seaborn", "pandas", "decord", "av",
             "papermill", "ipykernel", "skvideo"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '')}")
    except Exception as err:  # noqa: BLE001  (report every missing or broken package, then go on)
        print(f"  {name}: not importable ({type(err).__name__})")
import mvd_lib.cli  # noqa: F401  (the library and its command line)
EOF

stamp "bench"
for run in pretrain-image pretrain-video distill finetune; do
    batch=$("$PY" -c "import sys; from mvd_lib import runner; print(runner.run_config(sys.argv[1], \
runner.profile(sys.argv[2])).optim.batch_size)" "$run" "$PROFILE") || continue
    "$PY" -m mvd_lib bench --run "$run" --preset "$PROFILE" --device "$DEVICE" --batch "$batch" --steps 20 \
        | tail -n 1 | tee -a "$OUT/bench.jsonl"
done
"$PY" -m mvd_lib bench --preset laptop --device "$DEVICE" --steps 20 | tail -n 1 | tee -a "$OUT/bench.jsonl"
"$PY" - "$OUT/bench.jsonl" "$PROFILE" <<'EOF'
import json, sys
from mvd_lib import budget, runner
p = runner.profile(sys.argv[2])
for line in open(sys.argv[1]):
    b = json.loads(line)
    if b["preset"].split("_")[0] != p.name:
        continue
    steps = budget.estimate(runner.run_config(b["run"], p), "H200").total_steps
    print(f"{b['run']:15s} {b['sec_per_step']:.4f} s per step x {steps} steps = {steps * b['sec_per_step']:.0f} s "
          f"(estimate from {b['steps']} timed steps at batch {b['batch']}, {b['dtype']})")
EOF

stamp "the $PROFILE profile's Table 1 chain, at most $LIMIT s"
timeout "$LIMIT" "$PY" tools/time_profile.py "$PROFILE" --root "$RUNS" --no-artifacts --out "$OUT/chain.json"
echo "time_profile exit code $? (124: stopped at $LIMIT s)"
"$PY" - "$(dirname "$RUNS")" "$OUT/records.json" <<'EOF'
import json, sys
from mvd_lib.claims import run_times
rows = run_times(sys.argv[1])
open(sys.argv[2], "w").write(json.dumps(rows, indent=1) + "\n")
print("finished runs, from their records:")
for r in rows:
    print(f"  {r['verb']:15s} {r['preset']:12s} {r['total_s']:8.1f} s")
EOF
stamp "done"
