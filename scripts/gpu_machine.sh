#!/usr/bin/env bash
# The open studies' runs on one borrowed GPU machine (one GPU, many CPU cores, no internet, a fixed time), in four
# steps; docs/studies.md ("One GPU machine, many runs") says why each step is there.
#
#   scripts/gpu_machine.sh pack                here: .gpu_pack/ (git-ignored) gets the wheels of the packages the
#                                              machine's PyTorch image lacks and a link to $ICLR17_DATA_DIR; it
#                                              prints the paths to send along (the data's folders through the link)
#   scripts/gpu_machine.sh run OUT SECONDS     there, in a copy of the checkout with .gpu_pack/ beside it: installs
#                                              this commit, copies the committed ledgers of the planned studies into
#                                              OUT, runs the studies at once (their rows append to OUT's ledgers) and
#                                              stops every run still going after SECONDS (a cut run leaves no row)
#   scripts/gpu_machine.sh check               here, before the lease: every plan entry's `status` (its config and
#                                              arguments parse; what it would run)
#   scripts/gpu_machine.sh merge DIR           here: appends the rows of each DIR/<name>.jsonl that
#                                              results/ledgers/<name>.jsonl lacks; then `iclr17 results` and commit
#
# ICLR17_COMMIT (required by `run`: the commit being run) is recorded in every row: run only committed code. The
# plan (which studies, how many workers) is the PLAN array below, in the order of their issues; edit it for the lease.
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/.."

PACK=.gpu_pack
WHEELS=(jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0)  # jsonargparse[signatures]
DATA=(mnist war_and_peace)                                                         # folders of $ICLR17_DATA_DIR

# "<study> <config> <workers> [study arguments]": one study process each, all at once, issue 16's then issue 17's;
# the ledger is the config's name. A study whose runs added rows runs again (a later phase may now be planned).
# Sizes are estimates (an H200 with 16 cores): runs that cannot finish in the lease are left out, EBGAN-LN among
# them (150 epochs of 600 small steps, about 20 minutes a run); configs/studies/ebgan_ln_table2.yaml runs it.
PLAN=(
  "halting configs/studies/halting_mlp_paper.yaml 1 --seed=0 --system.init_args.device=cuda"
  "halting configs/studies/halting_mlp_paper.yaml 1 --seed=1 --system.init_args.device=cuda"
  "halting configs/studies/halting_mlp_paper.yaml 1 --seed=2 --system.init_args.device=cuda"
  "halting configs/studies/halting_mlp_paper.yaml 1 --seed=3 --system.init_args.device=cuda"
  "halting configs/studies/halting_mlp_paper.yaml 1 --seed=4 --system.init_args.device=cuda"
  "entropy-sgd-char-lstm-selected configs/studies/entropy_sgd_char_lstm_selected.yaml 3"
  "seeds configs/studies/entropy_sgd_table1_mnistfc_entropy_lua_rerun.yaml 3"
  "seeds configs/studies/entropy_sgd_table1_mnistfc_lua_adam.yaml 2"
  "seeds configs/studies/entropy_sgd_table1_mnistfc_lua_entropy.yaml 2"
  "seeds configs/studies/entropy_sgd_table1_lenet_lua_adam.yaml 3"
  "seeds configs/studies/entropy_sgd_table1_lenet_lua_entropy.yaml 3"
  "ebgan-grid configs/studies/ebgan_grid_subset.yaml 4 --accelerator=gpu"
)

pack() {
  local data_dir=${ICLR17_DATA_DIR:?set ICLR17_DATA_DIR to the data folder (e.g. ../shared/data)}
  rm -rf "$PACK.partial" && mkdir -p "$PACK.partial/whl"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$PACK.partial/whl" "${WHEELS[@]}"
  ln -s "$(realpath "$data_dir")" "$PACK.partial/data"  # a link, no copy: the data travels through it
  rm -rf "$PACK" && mv "$PACK.partial" "$PACK"           # never a half-made pack
  echo "carry: [\"$PACK/whl\"$(printf ', "%s"' "${DATA[@]/#/$PACK/data/}")]"
}

ledger_name() {  # a study config's ledger: its `name:`
  sed -n 's/^name: *//p' "$1"
}

study() {  # one plan entry, rerun while it adds rows: OUT STUDY CONFIG WORKERS [ARGS...]
  local out=$1 name=$2 config=$3 workers=$4 ledger before
  shift 4
  ledger="$out/$(ledger_name "$config").jsonl"
  while :; do
    before=$(wc -l <"$ledger")
    python3 -P -m iclr17 "$name" --config "$config" "$@" --ledger_dir="$out" run --workers "$workers"
    (( $(wc -l <"$ledger") > before )) || break
  done
}

check() {
  local entry study config workers extra
  for entry in "${PLAN[@]}"; do
    read -r study config workers extra <<<"$entry"
    # shellcheck disable=SC2086  # $extra is words
    python3 -P -m iclr17 "$study" --config "$config" $extra status | awk 'NR == 1'
  done
}

alive() {
  local pid
  for pid; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}

run() {
  local out=${1:?usage: run OUT SECONDS} seconds=${2:?usage: run OUT SECONDS}
  local site=/tmp/iclr17-site deadline=$((SECONDS + seconds))
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$PACK"/whl/*.whl
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" .
  export PYTHONPATH="$site" ICLR17_DATA_DIR="$PWD/$PACK/data" WANDB_MODE=offline OMP_NUM_THREADS=1
  export ICLR17_COMMIT=${ICLR17_COMMIT:?set ICLR17_COMMIT to the commit being run}
  python3 -P -c "import iclr17, sys; assert iclr17.__file__.startswith(sys.argv[1]), iclr17.__file__" "$site"
  mkdir -p "$out"
  local pids=() entry study config workers extra ledger logs=/tmp/iclr17-logs
  mkdir -p "$logs"
  for entry in "${PLAN[@]}"; do
    read -r study config workers extra <<<"$entry"
    ledger=$(ledger_name "$config")
    [[ -e "$out/$ledger.jsonl" ]] || cp "results/ledgers/$ledger.jsonl" "$out/" 2>/dev/null \
      || touch "$out/$ledger.jsonl"
    # shellcheck disable=SC2086  # $extra is words
    setsid "$SELF" study "$out" "$study" "$config" "$workers" $extra >"$logs/${#pids[@]}.log" 2>&1 &
    pids+=("$!")
  done
  while (( SECONDS < deadline )) && alive "${pids[@]}"; do sleep 5; done
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done  # each study's whole process group
  for entry in "${!PLAN[@]}"; do echo "== ${PLAN[$entry]}"; tail -n 5 "$logs/$entry.log"; done | tee "$out/studies.log"
}

merge() {
  local dir=${1:?usage: merge DIR} returned committed new
  for returned in "$dir"/*.jsonl; do
    [[ -s "$returned" ]] || continue
    committed="results/ledgers/$(basename "$returned")"
    touch "$committed"
    new=$(grep -vxF -f "$committed" "$returned" || true)  # rows are unique lines: those not committed yet
    [[ -n "$new" ]] && printf '%s\n' "$new" >>"$committed"
    echo "$committed: $(grep -c . <<<"$new" || true) new row(s)"
  done
}

case "${1:-}" in
  pack) pack ;;
  run) shift; run "$@" ;;
  study) shift; study "$@" ;;
  check) check ;;
  merge) shift; merge "$@" ;;
  *) sed -n '2,17p' "$SELF"; exit 2 ;;
esac
