#!/usr/bin/env bash
# How the Study 2 searches (issue #28, lib/study/tuning.py) are run and kept: every trial from one
# clean worktree of one commit, resumable across working sessions and machines.
#
#   scripts/tuning_runs.sh run [SEARCH...]   restore the saved trial records, then run each search (all
#                                            by default, in the order below) in the worktree, saving
#                                            finished trials as it goes (every 5 min, and at exit)
#   scripts/tuning_runs.sh restore           only the first step of run (no training)
#   scripts/tuning_runs.sh save              copy the records of finished trials and searches (trial.json,
#                                            search.json, best.json, recipe.json) into results/tuning and commit them
#                                            (only those paths); notebook 07 makes the report from them
#   scripts/tuning_runs.sh list              the searches, one "name|run_all.sh arguments" a line
#
# A search's state is its trial records (lib/study/tuning.py, "Resuming"): restored into the worktree,
# they make the same command go on with the trials left. The trials' run folders (seed<k>/) stay in the
# worktree; the records hold every number the report reads, and never a test score.
# $TUNING_STOP_AFTER_MIN (run): once that many minutes have passed, the search is stopped as soon as its next
# trial ends (its record saved; the trial just begun is lost), so that a working session that must end
# loses no half-trained trial: set it to the minutes left minus the longest trial you expect.
# $TUNING_EXTRA_ARGS is added to every search's arguments: resources such as "--gpus-per-trial 0.25
# --cpus-per-trial 4" on a GPU machine (they change where trials run, not the search's budget).
# The worktree is $TUNING_WORKTREE (default: ../tuning-$TUNING_COMMIT beside this checkout: one per commit,
# since searches may run from different commits, docs/results.md#tuning-status), at $TUNING_COMMIT; it
# shares this checkout's .venv. STUDY_DATA_DIR must name the data folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMMIT="${TUNING_COMMIT:-}"
WORKTREE="${TUNING_WORKTREE:-$(dirname "$ROOT")/tuning-$COMMIT}"
SAVED="$ROOT/results/tuning"
source "$ROOT/scripts/worktree.sh"  # clean_worktree, keep_saving

# name|run_all.sh arguments, in the order they run: the frozen searches first (CPU, minutes a
# method), then the fine-tuned ones (a GPU: several trials share it).
SEARCHES=(
  "ko6-me5-small-frozen|--profile tune --setting frozen --dataset ko6 --encoder me5-small --method ce,combined,triplet,ce+triplet,arcface,ce+arcface,triplet+arcface,supcon"
  "ed32-minilm-frozen|--profile tune --setting frozen --dataset ed32 --encoder minilm --method ce,combined,triplet,ce+triplet,arcface,ce+arcface,triplet+arcface,supcon"
  "goemo27-minilm-frozen|--profile tune --setting frozen --dataset goemo27 --encoder minilm --method ce,combined,triplet,ce+triplet,arcface,ce+arcface,triplet+arcface,supcon"
  "ed6-minilm|--profile tune --setting finetune --dataset ed6 --encoder minilm --method ce --method combined --method ce=0.5+supcon=0.5 --method triplet+arcface"
  "ko6-me5-small|--profile tune --setting finetune --dataset ko6 --encoder me5-small --method ce --method combined"
)

data_env() {
  if [[ -z "${STUDY_DATA_DIR:-}" ]]; then echo "error: set STUDY_DATA_DIR to the data folder" >&2; exit 2; fi
  export STUDY_DATA_DIR="$(realpath "$STUDY_DATA_DIR")" STUDY_CACHE_DIR="${STUDY_CACHE_DIR:-$ROOT/.cache}"
  export TOKENIZERS_PARALLELISM=false
}

worktree() {
  if [[ -z "$COMMIT" ]]; then echo "error: set TUNING_COMMIT to the commit the searches run from" >&2; exit 2; fi
  # the records restored from results/tuning are what the searches resume from, not a change of code
  clean_worktree "$ROOT" "$WORKTREE" "$COMMIT" results/tuning
}

records() {  # the record files of finished trials and searches under $1, relative to $1
  [[ -d "$1" ]] || return 0
  (cd "$1" && find . -path '*/.ray' -prune -o -type f \( -name trial.json -o -name search.json -o -name best.json -o -name recipe.json \) \
      -print | sed 's|^\./||' | sort)
}

restore() {  # saved records back into the worktree, so the searches resume where they stopped
  local rel n=0
  for rel in $(records "$SAVED"); do
    [[ -e "$WORKTREE/results/tuning/$rel" ]] && continue
    mkdir -p "$(dirname "$WORKTREE/results/tuning/$rel")"
    cp -p "$SAVED/$rel" "$WORKTREE/results/tuning/$rel"; n=$((n + 1))
  done
  echo "restored $n record(s) into $WORKTREE/results/tuning"
}

save() {
  local src="$WORKTREE/results/tuning" rel new=()
  for rel in $(records "$src"); do
    mkdir -p "$(dirname "$SAVED/$rel")"
    # the records name run folders by this machine's worktree path: saved project-relative instead
    sed "s|$WORKTREE/||g" "$src/$rel" > "$SAVED/$rel.tmp"
    if [[ -e "$SAVED/$rel" ]] && cmp -s "$SAVED/$rel.tmp" "$SAVED/$rel"; then rm "$SAVED/$rel.tmp"; continue; fi
    mv "$SAVED/$rel.tmp" "$SAVED/$rel"
    new+=("$SAVED/$rel")
  done
  if (( ${#new[@]} )); then
    cd "$ROOT"
    git add -f -- "${new[@]}"
    git commit -q -m "tuning: ${#new[@]} record(s) of finished trials and searches (clean worktree at ${COMMIT:0:7})" \
      -- "${new[@]}"
    echo "committed ${#new[@]} record(s)"
  fi
}

stop_after_a_trial() {  # $TUNING_STOP_AFTER_MIN: watch for the first trial to end after that many minutes
  local minutes=${TUNING_STOP_AFTER_MIN:-}
  [[ -z "$minutes" ]] && return 0
  STOP_FLAG="$(mktemp -d "${TMPDIR:-/tmp}/tuning-stop.XXXXXX")"
  (
    sleep $((minutes * 60))
    kill -0 $$ 2>/dev/null || exit 0
    local before now
    before=$(records "$WORKTREE/results/tuning" | grep -c 'trial\.json$' || true)
    echo "=== $(date -u +%FT%TZ): $minutes min have passed; the search stops when its next trial ends"
    while sleep "${STOP_POLL:-10}" && kill -0 $$ 2>/dev/null; do  # $$: this script (ends with it)
      now=$(records "$WORKTREE/results/tuning" | grep -c 'trial\.json$' || true)
      if (( now > before )); then
        touch "$STOP_FLAG/stop"
        kill -TERM "$(cat "$STOP_FLAG/runner" 2>/dev/null)" 2>/dev/null || true
        break
      fi
    done
  ) &
  WATCHER=$!
}

run() {
  local known name
  known=" $(printf '%s ' "${SEARCHES[@]%%|*}")"
  for name in "$@"; do  # before anything is set up or trained
    [[ "$known" == *" $name "* ]] || { echo "error: $name is not a search (one of:$known)" >&2; exit 2; }
  done
  if [[ -n "${TUNING_STOP_AFTER_MIN:-}" && ! "$TUNING_STOP_AFTER_MIN" =~ ^[0-9]+$ ]]; then
    echo "error: TUNING_STOP_AFTER_MIN=$TUNING_STOP_AFTER_MIN: give a whole number of minutes" >&2; exit 2
  fi
  data_env
  "$ROOT/scripts/setup_env.sh"
  worktree
  restore
  keep_saving  # save finished work every $SAVE_EVERY seconds while it trains, and at exit (worktree.sh)
  stop_after_a_trial
  local entry name args wanted=("$@")
  for entry in "${SEARCHES[@]}"; do
    name=${entry%%|*}
    if (( ${#wanted[@]} )) && [[ " ${wanted[*]} " != *" $name "* ]]; then continue; fi
    eval "args=(${entry#*|} ${TUNING_EXTRA_ARGS:-})"  # e.g. "--gpus-per-trial 0.25": where trials run, not what
    echo "=== $name: ${args[*]} ($(date -u +%FT%TZ))"
    # A search that ends "interrupted" (exit 130) after trials were lost inside Ray more often than it
    # re-runs them itself is resumed from its records: up to $SEARCH_TRIES runs of the same command.
    local tries=1 status
    while :; do
      status=0
      (cd "$WORKTREE" && PYTHONPATH="$WORKTREE" exec "$WORKTREE/.venv/bin/python" -m lib.runner "${args[@]}" < /dev/null) &
      [[ -z "${STOP_FLAG:-}" ]] || echo $! > "$STOP_FLAG/runner"
      wait $! || status=$?
      if [[ -n "${STOP_FLAG:-}" && -e "$STOP_FLAG/stop" ]]; then
        echo "=== $name: stopped after a trial ended (TUNING_STOP_AFTER_MIN=$TUNING_STOP_AFTER_MIN); the same command resumes"
        rm -rf "$STOP_FLAG"
        exit 0
      fi
      (( status == 130 && tries < ${SEARCH_TRIES:-5} )) || break
      tries=$((tries + 1))
      echo "=== $name: interrupted (exit 130): resuming from its records, run $tries of ${SEARCH_TRIES:-5}"
    done
    (( status == 0 )) || exit "$status"
  done
  if [[ -n "${WATCHER:-}" ]]; then kill "$WATCHER" 2>/dev/null || true; rm -rf "$STOP_FLAG"; fi
}

main() {
  case "${1:-}" in
    run) shift; run "$@" ;;
    restore) worktree; restore ;;
    save) worktree; save ;;
    list) printf '%s\n' "${SEARCHES[@]}" ;;
    *) sed -n 2,20p "$0" >&2; exit 2 ;;
  esac
}
main "$@"; exit $?
