#!/usr/bin/env bash
# How the confirmatory studies of PROTOCOL.md are trained and published (amendments 2(b) and 3):
# every run from one clean worktree of commit 1e99608, resumable across working sessions.
# STUDY_PROTOCOL=2: the same for Study 2's (PROTOCOL-2.md, lib/study/studies.py STUDIES_2), from the commit
# that protocol names (STUDY_COMMIT until it does), in a worktree of its own (default ../study2).
#
#   scripts/confirmatory_runs.sh run       restore the runs saved in results/in-progress[-2], then train
#                                          every study not yet published, in the protocol's order,
#                                          saving finished runs as it goes (every 5 min, and at exit)
#   scripts/confirmatory_runs.sh restore   only the first step of run (no training)
#   scripts/confirmatory_runs.sh save      copy finished runs into results/in-progress[-2] and commit
#                                          them (only that path), so a stopped machine loses at most
#                                          the run it was training
#   scripts/confirmatory_runs.sh publish STUDY
#                                          move a finished study into results/STUDY and render it
#                                          with this checkout's analysis code (amendment 4(h))
#
# The worktree is $STUDY_WORKTREE (default: ../study, ../study2 for Study 2, beside this checkout); it shares this
# checkout's .venv. STUDY_DATA_DIR must name the data folder. $STUDY_EXTRA_ARGS is added to every training
# call of run: where the runs train, only --ray options (e.g. "--ray HEAD_IP:6379", docs/cluster.md), never
# what they train.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROTOCOL="${STUDY_PROTOCOL:-1}"
case "$PROTOCOL" in
  1) COMMIT="${STUDY_COMMIT:-1e99608}"  # the protocol's (amendment 3); another only for tests
     WORKTREE="${STUDY_WORKTREE:-$(dirname "$ROOT")/study}"
     SAVED="$ROOT/results/in-progress" ;;
  2) COMMIT="${STUDY_COMMIT:-}"  # PROTOCOL-2.md §6 names it; until then it must be given
     WORKTREE="${STUDY_WORKTREE:-$(dirname "$ROOT")/study2}"
     SAVED="$ROOT/results/in-progress-2" ;;  # each protocol's runs restored only into its own worktree
  *) echo "error: STUDY_PROTOCOL=$PROTOCOL: 1 (PROTOCOL.md) or 2 (PROTOCOL-2.md)" >&2; exit 2 ;;
esac
source "$ROOT/scripts/worktree.sh"  # clean_worktree, keep_saving

# The protocol's order (amendment 3), "results folder|run_all.sh arguments|seed-by-seed arguments|seeds"
# a line, from the one list of the studies (lib/study/studies.py: standard library only, so any python3
# reads it; it says why when it cannot).
listing="$(PYTHONPATH="$ROOT" "${STUDIES_PYTHON:-python3}" -m lib.study.studies --protocol "$PROTOCOL")" || exit 2
mapfile -t STUDIES <<< "$listing"

data_env() {  # what training and rendering need
  if [[ -z "${STUDY_DATA_DIR:-}" ]]; then echo "error: set STUDY_DATA_DIR to the data folder" >&2; exit 2; fi
  export STUDY_DATA_DIR="$(realpath "$STUDY_DATA_DIR")" STUDY_CACHE_DIR="${STUDY_CACHE_DIR:-$ROOT/.cache}"
  export TOKENIZERS_PARALLELISM=false
}

study_args() {  # one study of STUDIES: its run_all.sh arguments into the array "args", the arguments
  # run seed by seed first into "paired" (empty: none) and its seeds into "seeds"
  local entry folder all by_seed list
  for entry in "${STUDIES[@]}"; do
    IFS='|' read -r folder all by_seed list <<< "$entry"
    if [[ "$folder" == "$1" ]]; then
      eval "args=($all)"; eval "paired=($by_seed)"; IFS=',' read -r -a seeds <<< "$list"; return 0
    fi
  done
  echo "error: $1 is not a confirmatory study (one of: ${STUDIES[*]%%|*})" >&2; exit 2
}

published() { [[ -f "$ROOT/results/$1/run_times.csv" ]]; }  # written only when a protocol study is published

worktree() {  # the runner then runs from the worktree
  if [[ -z "$COMMIT" ]]; then
    echo "error: PROTOCOL-2.md's commit is not in this script yet: set STUDY_COMMIT to the commit it names" >&2; exit 2
  fi
  clean_worktree "$ROOT" "$WORKTREE" "$COMMIT"
  cd "$WORKTREE"
}

finished_runs() {  # run folders with a metrics.json under $1/runs (the grid's included), relative to $1
  [[ -d "$1/runs" ]] || return 0
  (cd "$1" && find runs -path '*.partial' -prune -o -path '*/seed*/metrics.json' -print | sed 's|/metrics.json$||' | sort)
}

restore() {  # saved runs back into the worktree's results/local, with the time each finished
  local saved study run rel when
  for saved in "$SAVED"/*/; do
    [[ -d "$saved/runs" ]] || continue
    study=$(basename "$saved")
    for rel in $(finished_runs "$saved"); do
      run="$saved$rel"
      [[ -e "$WORKTREE/results/local/$study/$rel" ]] && continue
      mkdir -p "$(dirname "$WORKTREE/results/local/$study/$rel")"
      cp -a "$run" "$WORKTREE/results/local/$study/$rel"
      echo "restored $study/$rel"
    done
    [[ -f "$saved/run_times.csv" ]] || continue
    tail -n +2 "$saved/run_times.csv" | while IFS=, read -r rel when; do
      touch -d "$when" "$WORKTREE/results/local/$study/$rel/metrics.json"
    done
  done
}

extra_args() {  # $STUDY_EXTRA_ARGS into the array "extra": --ray options and their values only
  eval "extra=(${STUDY_EXTRA_ARGS:-})"
  local word
  for word in ${extra[@]+"${extra[@]}"}; do
    if [[ "$word" == -* && "$word" != --ray* ]]; then
      echo "error: STUDY_EXTRA_ARGS: $word: only --ray options (where the runs train) may be added to a protocol's" \
           "runs" >&2; exit 2
    fi
  done
}

run() {
  local extra
  extra_args  # before anything is made
  data_env
  "$ROOT/scripts/setup_env.sh"
  worktree
  restore
  keep_saving  # save finished work every $SAVE_EVERY seconds while it trains, and at exit (worktree.sh)
  local py=(env PYTHONPATH="$WORKTREE" "$WORKTREE/.venv/bin/python" -m lib.runner) entry study args paired seeds k
  for entry in "${STUDIES[@]}"; do
    study=${entry%%|*}; study_args "$study"
    if published "$study"; then echo "$study: published, skipped"; continue; fi
    # into the folder the list names (results/local/<study>, what publish reads), whatever the runner's default
    if (( ${#paired[@]} )); then  # amendment 2(b): seed by seed, so the compared methods stay paired
      for k in "${seeds[@]}"; do
        "${py[@]}" "${paired[@]}" ${extra[@]+"${extra[@]}"} --seeds "$k" --results "results/local/$study"
      done
    fi
    "${py[@]}" "${args[@]}" ${extra[@]+"${extra[@]}"} --seeds "$(IFS=,; echo "${seeds[*]}")" --results "results/local/$study"
  done
}

first_seed() {  # the first seed a study lists (notebook 05 draws its embeddings); 0 for a folder not listed
  local entry folder all by_seed list
  for entry in "${STUDIES[@]}"; do
    IFS='|' read -r folder all by_seed list <<< "$entry"
    if [[ "$folder" == "$1" ]]; then echo "${list%%,*}"; return 0; fi
  done
  echo 0
}

save() {
  local src="$WORKTREE/results/local" study_dir study run rel dst times new=() first
  for study_dir in "$src"/*/; do
    study=$(basename "$study_dir")
    published "$study" && continue
    first=$(first_seed "$study")
    for rel in $(finished_runs "$study_dir"); do
      run="$study_dir$rel"; dst="$SAVED/$study/$rel"
      [[ -e "$dst/metrics.json" ]] && continue
      rm -rf "$dst.tmp"; mkdir -p "$dst.tmp" && cp -a "$run"/. "$dst.tmp"/
      # notebook 05 draws the study's first seed's embeddings (not the grid's); the others stay behind
      [[ "$rel" =~ ^runs/[^/]+/seed${first}$ ]] || rm -f "$dst.tmp/test_embeddings.npy"
      # of a weight-grid run only what makes it reusable (config and metrics; a published grid keeps
      # these for seed 0 and nothing of the other seeds, .gitignore)
      [[ "$rel" == runs/grid/* ]] && find "$dst.tmp" -type f ! -name config.json ! -name metrics.json -delete
      mv "$dst.tmp" "$dst"; new+=("$study/$rel")
      # git keeps no file times: record when the run finished, for run_times.csv at publication
      times="$SAVED/$study/run_times.csv"
      [[ -f "$times" ]] || echo "run,metrics_json_mtime_utc" > "$times"
      echo "$rel,$(date -u -r "$run/metrics.json" +%Y-%m-%dT%H:%M:%S+00:00)" >> "$times"
    done
  done
  # only the finished runs' folders and their run_times.csv (other changes under results/, e.g. a study being
  # published beside a running study, stay out of this commit), wherever ROOT's HEAD does not hold them as
  # they are: this save's copies, and any an earlier save could not commit
  local saved=()
  for study_dir in "$SAVED"/*/; do
    for rel in $(finished_runs "$study_dir"); do saved+=("$study_dir$rel"); done
    [[ -f "${study_dir}run_times.csv" ]] && saved+=("${study_dir}run_times.csv")
  done
  (( ${#saved[@]} )) || return 0
  commit_uncommitted "in-progress: finished confirmatory runs ${new[*]:-left uncommitted by an earlier save} (clean worktree at $COMMIT)" \
    "${saved[@]}"
  if (( COMMITTED )); then echo "committed ${new[*]:-what an earlier save left uncommitted}"; fi
}

publish() {
  local study=$1 args paired seeds
  [[ -n "$study" ]] || { echo "usage: scripts/confirmatory_runs.sh publish STUDY" >&2; exit 2; }
  study_args "$study"
  data_env
  local src="$WORKTREE/results/local/$study"
  [[ -d "$src/runs" ]] || { echo "error: no finished runs in $src/runs" >&2; exit 2; }
  local run_dir others=()  # the summary reads every run there is: only the study's seeds may be published
  while IFS= read -r run_dir; do
    [[ " ${seeds[*]} " == *" ${run_dir##*/seed} "* ]] || others+=("${run_dir#"$src"/}")
  done < <(find "$src/runs" -type d -regex '.*/seed[0-9]+' | sort)
  if (( ${#others[@]} )); then
    echo "error: $study lists seeds ${seeds[*]}; not publishing runs of other seeds: ${others[*]} (nothing was changed)" >&2
    exit 2
  fi
  cd "$ROOT"
  if [[ -e "results/$study" ]]; then git rm -rq "results/$study"; rm -rf "results/$study"; fi
  mkdir -p "results/$study"
  cp -a "$src/runs" "results/$study/"
  find "results/$study/runs" -name '*.partial' -prune -exec rm -rf {} +
  # --render-only: a run missing from the worktree fails its notebook instead of being trained here,
  # by this checkout's code; then the study as git has it comes back (nothing was committed)
  if ! .venv/bin/python -m lib.study.run_times "results/$study" ||
     ! .venv/bin/python -m lib.runner "${args[@]}" --seeds "$(IFS=,; echo "${seeds[*]}")" --results "results/$study" \
         --publish --render-only; then
    # the failed notebooks (ignored by git) say why in full: keep them beside the worktree's runs
    local kept="$WORKTREE/results/local/$study/publish-failed"
    mkdir -p "$kept"
    find "results/$study/notebooks" -name '*.failed.ipynb' -exec cp -a {} "$kept"/ \; 2>/dev/null || true
    rm -rf "results/$study"
    git checkout -q HEAD -- "results/$study" 2>/dev/null || git rm -rq --cached --ignore-unmatch "results/$study"
    echo "error: $study not published (a step failed: see above; failed notebooks kept in $kept);" \
         "results/$study is as git has it" >&2
    exit 1
  fi
  if [[ -e "$SAVED/$study" ]]; then git rm -rq "$SAVED/$study"; rm -rf "$SAVED/$study"; fi
  echo "published $study: check results/$study/summary.md, then python -m lib.report and README"
}

main() {
  case "${1:-}" in
    run) run ;;
    restore) restore ;;
    save) save ;;
    publish) publish "${2:-}" ;;
    *) sed -n 2,19p "$0" >&2; exit 2 ;;
  esac
}
# One line, read before anything runs: editing this file during a long run cannot change what runs.
main "$@"; exit $?
