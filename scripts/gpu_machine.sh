#!/usr/bin/env bash
# The open studies' runs on one borrowed GPU machine (one GPU, many CPU cores, no internet, a fixed time), in four
# steps; docs/studies.md ("One GPU machine, many runs") says why each step is there.
#
#   scripts/gpu_machine.sh pack                here, on a clean checkout: .gpu_pack/ (git-ignored) gets the wheels
#                                              of the packages the machine's PyTorch image lacks, the commit and the
#                                              checksums of its files, and a link to $ICLR17_DATA_DIR; it prints the
#                                              paths to send along (the data's folders through the link)
#   scripts/gpu_machine.sh check               here, the venv active, before the lease: every plan entry's `status`
#                                              (its config and arguments parse; what it would run)
#   scripts/gpu_machine.sh run OUT SECONDS     there, in a copy of the checkout with .gpu_pack/ beside it: checks the
#                                              copy is the packed commit, installs it, copies the committed ledgers of
#                                              the planned studies into OUT, runs the studies at once (their rows
#                                              append to OUT's ledgers), stops every run still going SECONDS after it
#                                              started (a cut run leaves no row) and keeps OUT/studies.log current;
#                                              give the call a time limit of at least SECONDS + 30
#   scripts/gpu_machine.sh merge DIR           here: appends the complete rows of each DIR/<name>.jsonl that
#                                              results/ledgers/<name>.jsonl lacks; then `iclr17 results` and commit
#
# Every row records the packed commit. The plan (which studies, how many workers) is the PLAN array below, in the
# order of their issues; edit it (and commit) before packing.
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/.."

PACK=.gpu_pack
WHEELS=(jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0)  # jsonargparse[signatures]
DATA_FILES=(mnist/MNIST/raw/train-images-idx3-ubyte.gz)  # a file of each $ICLR17_DATA_DIR folder the PLAN reads
DATA=("${DATA_FILES[@]%%/*}")                            # those folders, carried whole (the grid: mnist)

# "<study> <config> <workers> [study arguments]": one study process each, all at once, in the order of the open
# issues (issue 16's studies are complete). Each worker is one single-threaded run that drives the GPU from one core:
# at most MAX_WORKERS in all (the machine's 16 cores, one left for the script). Runs that cannot finish in a short
# lease are left out: EBGAN-LN (150 epochs of 600 small steps, an estimated 20 minutes a run). The EBGAN grid's
# runs are MLPs of 7,820 steps of batch 64 each (an estimated minute or two on the GPU; not yet measured there).
MAX_WORKERS=15
PLAN=(
  "ebgan-grid configs/studies/ebgan_grid_subset.yaml 15 --accelerator=gpu"
)

pack() {
  local data_dir=${ICLR17_DATA_DIR:?set ICLR17_DATA_DIR to the data folder (e.g. ../shared/data)}
  if [[ -n "$(git status --porcelain)" ]]; then
    echo "pack: the checkout has uncommitted changes (git status); rows must record the code they ran: commit first" >&2
    return 1
  fi
  rm -rf "$PACK.partial" && mkdir -p "$PACK.partial/whl"
  git rev-parse HEAD >"$PACK.partial/whl/COMMIT"
  git ls-files -z | xargs -0 sha256sum >"$PACK.partial/whl/FILES.sha256"  # `run` checks the copy against these
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$PACK.partial/whl" "${WHEELS[@]}"
  ln -s "$(realpath "$data_dir")" "$PACK.partial/data"  # a link, no copy: the data travels through it
  rm -rf "$PACK" && mv "$PACK.partial" "$PACK"           # never a half-made pack
  echo "carry: [\"$PACK/whl\"$(printf ', "%s"' "${DATA[@]/#/$PACK/data/}")]"
}

ledger_name() {  # a study config's ledger: its `name:`
  sed -n 's/^name: *//p' "$1"
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

plan_workers() {  # the workers of every PLAN entry, summed
  local entry study config workers extra total=0
  for entry in "${PLAN[@]}"; do read -r study config workers extra <<<"$entry"; total=$((total + workers)); done
  echo "$total"
}

write_log() {  # OUT LOGS: the last lines of every study's log, rewritten whole so that a cut call still returns one
  local entry
  for entry in "${!PLAN[@]}"; do echo "== ${PLAN[$entry]}"; tail -n 5 "$2/$entry.log"; done >"$1/studies.log.partial"
  mv "$1/studies.log.partial" "$1/studies.log"
}

run() {
  local out=${1:?usage: run OUT SECONDS} seconds=${2:?usage: run OUT SECONDS}
  local site=/tmp/iclr17-site deadline=$((SECONDS + seconds)) commit file workers_in_plan
  # Checks before anything is installed or started: the copy is the packed commit, the data came along.
  commit=$(cat "$PACK/whl/COMMIT") || { echo "run: no $PACK/whl/COMMIT: run \`pack\` here and carry $PACK/whl" >&2; return 1; }
  [[ -z "${ICLR17_COMMIT:-}" || "$commit" == "$ICLR17_COMMIT"* ]] \
    || { echo "run: ICLR17_COMMIT=$ICLR17_COMMIT but $PACK/whl/COMMIT is $commit" >&2; return 1; }
  sha256sum --quiet -c "$PACK/whl/FILES.sha256" \
    || { echo "run: this copy differs from commit $commit (the files above): pack again from a clean checkout" >&2; return 1; }
  for file in "${DATA_FILES[@]}"; do
    [[ -s "$PACK/data/$file" ]] || { echo "run: $PACK/data/$file is missing: carry the paths \`pack\` printed" >&2; return 1; }
  done
  workers_in_plan=$(plan_workers)
  (( workers_in_plan <= MAX_WORKERS )) || { echo "run: PLAN asks for $workers_in_plan workers, over $MAX_WORKERS" >&2; return 1; }
  rm -rf "$site" build ./*.egg-info  # a warm machine's earlier install would otherwise be kept (pip --target)
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$PACK"/whl/*.whl
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" .
  export PYTHONPATH="$site" ICLR17_DATA_DIR="$PWD/$PACK/data" ICLR17_COMMIT="$commit" WANDB_MODE=offline
  export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
  python3 -P -c "import iclr17, sys; assert iclr17.__file__.startswith(sys.argv[1]), iclr17.__file__" "$site"
  mkdir -p "$out"
  local pids=() entry study config workers extra ledger logs=/tmp/iclr17-logs
  rm -rf "$logs" && mkdir -p "$logs"
  for entry in "${PLAN[@]}"; do
    read -r study config workers extra <<<"$entry"
    ledger=$(ledger_name "$config")
    [[ -e "$out/$ledger.jsonl" ]] || cp "results/ledgers/$ledger.jsonl" "$out/" 2>/dev/null \
      || touch "$out/$ledger.jsonl"
    # shellcheck disable=SC2086  # $extra is words
    setsid python3 -P -m iclr17 "$study" --config "$config" $extra --ledger_dir="$out" run --workers "$workers" \
      >"$logs/${#pids[@]}.log" 2>&1 &
    pids+=("$!")
  done
  while (( SECONDS < deadline )) && alive "${pids[@]}"; do write_log "$out" "$logs"; sleep 5; done
  # Each study's whole process group: SIGTERM (Lightning stops at its next batch), then SIGKILL what is left, so no
  # run can append a row while OUT is being copied back (merge also drops a line cut short).
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  for _ in {1..10}; do alive "${pids[@]}" || break; sleep 1; done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  write_log "$out" "$logs"
  cat "$out/studies.log"
}

merge() {  # rows are unique, self-contained JSON lines: append those not committed yet, never a line cut short
  local dir=${1:?usage: merge DIR} returned
  for returned in "$dir"/*.jsonl; do
    [[ -s "$returned" ]] || continue
    python3 - "$returned" "results/ledgers/$(basename "$returned")" <<'PY'
import json, sys
from pathlib import Path

returned, committed = Path(sys.argv[1]), Path(sys.argv[2])
text = committed.read_text() if committed.exists() else ""
have = set(text.split("\n"))
*lines, cut = returned.read_text().split("\n")  # cut: what follows the last newline, a line still being written


def is_row(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


new, skipped = [], int(bool(cut))
for row in lines:
    if not row or row in have:
        continue
    if is_row(row):
        new.append(row)
        have.add(row)
    else:
        skipped += 1
if new:
    with committed.open("a") as ledger:
        ledger.write(("\n" if text and not text.endswith("\n") else "") + "".join(row + "\n" for row in new))
print(f"{committed}: {len(new)} new row(s)" + (f", {skipped} incomplete line(s) left out" if skipped else ""))
PY
  done
}

case "${1:-}" in
  pack) pack ;;
  run) shift; run "$@" ;;
  check) check ;;
  merge) shift; merge "$@" ;;
  *) sed -n '2,/^set -euo/{/^set -euo/!p}' "$SELF"; exit 2 ;;
esac
