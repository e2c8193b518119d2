#!/usr/bin/env bash
# The figures only a GPU can give, in one prepared run: FNO training throughput against neuraloperator
# (eager, bf16 autocast), inference throughput of the shipped models, and the FNO paper's Darcy and
# Burgers recipes at full scale. Every phase has its own time limit and writes its Markdown table
# under OUT, so a run cut short still returns what it finished.
#
#   bash scripts/device_checks.sh                       # CUDA, full scale, OUT=device_checks/
#   OUT=/tmp/dc DEVICE=cpu SMOKE=1 bash scripts/device_checks.sh   # a 2-minute dry run of every phase on CPU
#
# Environment: OUT (results folder), DEVICE (cuda or cpu), SMOKE=1 (tiny sizes, to check the script),
# T_BENCH / T_RECIPE (seconds allowed per benchmark phase / per recipe), RECIPES (space-separated,
# default "fno_darcy_paper fno_burgers_paper", empty for none; also fno2d_ns_paper, fno3d_ns_paper), EPOCH_SCALE (multiplies the recipes' epochs, default 1),
# PHYSICS (space-separated physics-informed experiments run with `train.py` for T_RECIPE seconds each, e.g.
# "pig_helmholtz pig_helmholtz_adam pinn_burgers"; default none), PHYSICS_ARGS (extra overrides for them).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device_checks}
DEVICE=${DEVICE:-cuda}
SMOKE=${SMOKE:-0}
T_BENCH=${T_BENCH:-150}
T_RECIPE=${T_RECIPE:-420}
RECIPES=${RECIPES-fno_darcy_paper fno_burgers_paper}
EPOCH_SCALE=${EPOCH_SCALE:-1}
PHYSICS=${PHYSICS:-}
PHYSICS_ARGS=${PHYSICS_ARGS:-}
export WANDB_MODE=offline MPLBACKEND=Agg
mkdir -p "$OUT"

trainer=gpu
scale=1
bench_args=(--rounds 2 --warmup 3 --steps 20 --allocators retain)  # host allocator: CUDA tensors do not use it
if [ "$DEVICE" = cpu ]; then trainer=cpu; fi
if [ "$SMOKE" = 1 ]; then
  scale=0.01
  EPOCH_SCALE=0.004
  bench_args=(--rounds 1 --warmup 1 --steps 2 --configs fno1d-1024-m16 --allocators retain)
fi

{
  echo "# device checks $(date -u +%FT%TZ)"
  python - <<'EOF'
import platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU: {gpu}, host {platform.node()}")
EOF
} | tee "$OUT/machine.txt"

phase() {  # phase NAME SECONDS COMMAND...: run with a limit, keep stdout as OUT/NAME.md, log the status
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.md" 2>"$OUT/$name.log"
  local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$OUT/status.txt"
  tail -n 12 "$OUT/$name.md"
}

phase bench_train "$T_BENCH" python scripts/bench_train.py --device "$DEVICE" "${bench_args[@]}"
if [ "$DEVICE" != cpu ]; then
  phase bench_train_amp "$T_BENCH" python scripts/bench_train.py --device "$DEVICE" --amp "${bench_args[@]}"
fi
phase bench_inference "$T_BENCH" python scripts/bench_inference.py --device "$DEVICE" $([ "$SMOKE" = 1 ] && echo --rounds 2)

for recipe in $RECIPES; do
  extra=()
  # The Burgers recipe solves at 8192 points; a CFL number of 4 keeps ETDRK4 accurate and 4x faster.
  [ "$recipe" = fno_burgers_paper ] && extra+=(pde.generator.cfl=4)
  # Navier–Stokes (nu = 1e-3) solved on the stored 64² grid: the same solutions as 256² to 5e-9, ~60x faster.
  case $recipe in fno2d_ns_paper | fno3d_ns_paper) extra+=(pde.generator.resolution=64 pde.generator.stride=1) ;; esac
  phase "recipe_$recipe" "$T_RECIPE" python scripts/reproduce.py "recipes=[$recipe]" scale=$scale \
    epoch_scale="$EPOCH_SCALE" out="$OUT/results_$recipe.md" run_dir="$OUT/runs" trainer=$trainer \
    logger=csv "${extra[@]}"
done

for exp in $PHYSICS; do
  extra=()
  [ "$SMOKE" = 1 ] && extra+=(model.adam_steps=4 model.lbfgs_steps=2 model.eval_every=2 model.n_collocation=256
    model.n_boundary=64 model.n_initial=64 model.plot=false)
  # shellcheck disable=SC2086  # PHYSICS_ARGS is a list of overrides
  phase "physics_$exp" "$T_RECIPE" python train.py "experiment=$exp" trainer=$trainer logger=csv \
    "hydra.run.dir=$OUT/runs/physics_$exp" "${extra[@]}" $PHYSICS_ARGS
  python scripts/physics_summary.py "$OUT/runs/physics_$exp/csv/metrics.csv" | tee "$OUT/results_physics_$exp.md"
done
echo "done: $OUT"
