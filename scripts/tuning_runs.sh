#!/usr/bin/env bash
# How the Study 2 searches (issue #28, lib/study/tuning.py) are run and kept: every trial from one
# clean worktree of one commit, resumable across working sessions and machines.
#
#   scripts/tuning_runs.sh run [SEARCH...]   restore the saved trial records, then run each search (all
#                                            by default, in the order below) in the worktree, saving
#                                            finished trials as it goes (every 5 min, and at exit)
#   scripts/tuning_runs.sh restore           only the first step of run (no training)
#   scripts/tuning_runs.sh save              copy the records of finished trials and searches (trial.json,
#                                            search.json, best.json, recipe.json) that the worktree wrote or
#                                            changed into results/tuning and commit them (only those paths, and
#                                            any an earlier save copied but could not commit; a trial.json of a
#                                            trial found interrupted since is taken back); notebook 07 makes
#                                            the report from them
#   scripts/tuning_runs.sh publish SEARCH    once all its searches have finished: their report and notebook 07
#                                            (run_all.sh ... --publish), from a clean worktree at this checkout's
#                                            HEAD ($PUBLISH_WORKTREE, default ../publish-<hash>, removed after
#                                            if it made it), copied into results/tuning/SEARCH where they changed
#                                            and committed (only those paths)
#   scripts/tuning_runs.sh list              the searches, one "name|run_all.sh arguments" a line
#
# A search's state is its trial records (lib/study/tuning.py, "Resuming"): restored into the worktree,
# they make the same command go on with the trials left. The trials' run folders (seed<k>/) stay in the
# worktree; the records hold every number the report reads, and never a test score.
# $TUNING_STOP_AFTER_MIN (run): once that many minutes have passed, the search is stopped as soon as its next
# trial ends (its record saved; the trial just begun is lost), so that a working session that must end
# loses no half-trained trial (one trial at a time, as on CPU; with several at once the others stop
# mid-way): set it to the minutes left minus the longest trial you expect.
# $TUNING_EXTRA_ARGS is added to every search's arguments: resources such as "--gpus-per-trial 0.25
# --cpus-per-trial 4" on a GPU machine (they change where trials run, not the search's budget).
# The worktree is $TUNING_WORKTREE (default: ../tuning-$TUNING_COMMIT beside this checkout: one per commit,
# since searches may run from different commits, docs/results.md#tuning-status), at $TUNING_COMMIT (a hash:
# HEAD or a branch would move with every record saved); it shares this checkout's .venv. STUDY_DATA_DIR
# must name the data folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMMIT="${TUNING_COMMIT:-}"
# named by the commit's hash, not by how it was given
WORKTREE="${TUNING_WORKTREE:-$(dirname "$ROOT")/tuning-$(git -C "$ROOT" rev-parse --short=12 --verify -q \
  "$COMMIT^{commit}" 2>/dev/null || echo "$COMMIT")}"
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
  if [[ ! "$COMMIT" =~ ^[0-9a-f]{7,40}$ ]]; then  # HEAD or a branch moves with every record saved
    echo "error: TUNING_COMMIT=$COMMIT: give the commit's hash; a search's trials all come from one commit" >&2; exit 2
  fi
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
    # a trial the search found interrupted, not ended (see save): not to come back as an ended one
    [[ "$rel" == */trial.json && -e "$WORKTREE/results/tuning/${rel%.json}.interrupted.json" ]] && continue
    mkdir -p "$(dirname "$WORKTREE/results/tuning/$rel")"
    cp -p "$SAVED/$rel" "$WORKTREE/results/tuning/$rel"; n=$((n + 1))
  done
  echo "restored $n record(s) into $WORKTREE/results/tuning"
}

made_here() {  # the records this worktree wrote or changed, relative to results/tuning: not those its commit
  # holds as they were (another search's saver may since have committed newer ones in ROOT)
  git -C "$WORKTREE" status --porcelain -z --untracked-files=all -- results/tuning | tr '\0' '\n' \
    | sed -n 's|^.. results/tuning/||p' | grep -E '(^|/)(trial|search|best|recipe)\.json$' | grep -v '/\.ray/' | sort || true
}

save() {
  local src="$WORKTREE/results/tuning" rel mine=()
  for rel in $(made_here); do
    [[ -f "$src/$rel" ]] || continue
    mine+=("$SAVED/$rel")
    mkdir -p "$(dirname "$SAVED/$rel")"
    # the records name run folders by this machine's worktree path: saved project-relative instead
    sed "s|$WORKTREE/||g" "$src/$rel" > "$SAVED/$rel.tmp"
    if [[ -e "$SAVED/$rel" ]] && cmp -s "$SAVED/$rel.tmp" "$SAVED/$rel"; then rm "$SAVED/$rel.tmp"; continue; fi
    mv "$SAVED/$rel.tmp" "$SAVED/$rel"
  done
  # lib/study/tuning.py renames the record of a trial it finds interrupted rather than ended (a Ctrl-C, the
  # stop after TUNING_STOP_AFTER_MIN) trial.interrupted.json: a copy of its trial.json that a save made in
  # between would otherwise come back as an ended trial
  for rel in $(cd "$src" 2>/dev/null && find . -path '*/.ray' -prune -o -type f -name trial.interrupted.json -print \
               | sed 's|^\./||'); do
    rel="${rel%.interrupted.json}.json"
    [[ ! -e "$src/$rel" && -e "$SAVED/$rel" ]] || continue
    rm "$SAVED/$rel"; mine+=("$SAVED/$rel")
  done
  (( ${#mine[@]} )) || return 0
  # this save's copies, and any an earlier save could not commit
  commit_uncommitted "tuning: {n} record(s) of finished trials and searches (clean worktree at ${COMMIT:0:7})" \
    "${mine[@]}"
  if (( COMMITTED )); then echo "committed $COMMITTED record(s)"; fi
}

trials_ended() { records "$WORKTREE/results/tuning" | grep -c 'trial\.json$' || true; }

stop_after_a_trial() {  # $TUNING_STOP_AFTER_MIN: stop the search when the first trial after that many minutes ends
  local minutes=${TUNING_STOP_AFTER_MIN:-} script=$$ poll=${STOP_POLL:-10}
  [[ -z "$minutes" ]] && return 0
  STOP_FLAG="$(mktemp -d "${TMPDIR:-/tmp}/tuning-stop.XXXXXX")"
  (  # short sleeps, each after checking that this script still runs: the watcher ends with it
    local deadline before pid
    deadline=$(( $(date +%s) + 10#$minutes * 60 ))
    while (( $(date +%s) < deadline )); do kill -0 "$script" 2>/dev/null || exit 0; sleep "$poll"; done
    before=$(trials_ended)
    touch "$STOP_FLAG/watching"  # from here a trial that ends stops the search
    echo "=== $(date -u +%FT%TZ): $minutes min have passed; the search stops when its next trial ends"
    while kill -0 "$script" 2>/dev/null; do
      if [[ ! -e "$STOP_FLAG/stop" ]] && (( $(trials_ended) > before )); then touch "$STOP_FLAG/stop"; fi
      if [[ -e "$STOP_FLAG/stop" ]]; then  # until the runner has gone (the pid read anew: only a runner's)
        pid=$(cat "$STOP_FLAG/runner" 2>/dev/null || true)
        # -ww: the whole command line (piped, ps cuts it at 80 columns, before a long path's lib.runner)
        if [[ -n "$pid" ]] && ps -ww -p "$pid" -o args= 2>/dev/null | grep -q 'lib\.runner'; then
          kill -TERM "$pid" 2>/dev/null || true
        fi
      fi
      sleep "$poll"
    done
  ) &
}

stopped() {  # the watcher asked the search to stop: end here, saving at exit
  [[ -n "${STOP_FLAG:-}" && -e "$STOP_FLAG/stop" ]] || return 1
  echo "=== $1: stopped after a trial ended (TUNING_STOP_AFTER_MIN=$TUNING_STOP_AFTER_MIN); the same command resumes"
  rm -rf "$STOP_FLAG"
  exit 0
}

search_args() {  # the run_all.sh arguments of search $1 (exit 2 for an unknown name)
  local entry
  for entry in "${SEARCHES[@]}"; do
    if [[ "${entry%%|*}" == "$1" ]]; then echo "${entry#*|}"; return 0; fi
  done
  echo "error: ${1:-(none)} is not a search (one of: $(printf '%s ' "${SEARCHES[@]%%|*}"))" >&2; exit 2
}

run() {
  local name
  for name in "$@"; do search_args "$name" > /dev/null; done  # before anything is set up or trained
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
      stopped "$name" || true
      # in the foreground (Ctrl-C reaches it; a TERM to this script waits for it), its pid for the watcher
      (cd "$WORKTREE" && PYTHONPATH="$WORKTREE" exec sh -c 'echo $$ > "$1"; shift; exec "$@"' sh \
        "${STOP_FLAG:-/dev/null}${STOP_FLAG:+/runner}" "$WORKTREE/.venv/bin/python" -m lib.runner "${args[@]}" \
        < /dev/null) || status=$?
      stopped "$name" || true
      (( status == 130 && tries < ${SEARCH_TRIES:-5} )) || break
      tries=$((tries + 1))
      echo "=== $name: interrupted (exit 130): resuming from its records, run $tries of ${SEARCH_TRIES:-5}"
    done
    (( status == 0 )) || exit "$status"
  done
  [[ -z "${STOP_FLAG:-}" ]] || rm -rf "$STOP_FLAG"
}

# copy_back WORKTREE ROOT STUDY: what git sees new or changed under STUDY in WORKTREE (the runs a publish trains
# are ignored, as everywhere) copied into ROOT, text made project-relative (as save() keeps records), only where
# it differs from ROOT's copy; prints the paths copied, NUL-separated. Refuses (nothing copied) a deletion.
COPY_BACK='
import os, subprocess, sys
worktree, root, study = sys.argv[1:4]
out = subprocess.run(["git", "-C", worktree, "status", "--porcelain", "-z", "-uall", "--", study],
                     check=True, capture_output=True).stdout.split(b"\0")
found, i = [], 0
while i < len(out):
    entry, i = out[i], i + 1
    if not entry:
        continue
    code, rel = entry[:2].decode(), os.fsdecode(entry[3:])
    if code[0] in "RC":
        i += 1  # a rename names its source next
    if "D" in code:
        sys.exit(f"error: the publish deleted {rel} in {worktree}; nothing copied")
    found.append(rel)
prefixes = {os.path.realpath(worktree) + "/", os.path.abspath(worktree) + "/"}
copied = []
for rel in found:
    with open(os.path.join(worktree, rel), "rb") as f:
        data = f.read()
    if rel.endswith((".json", ".csv", ".md", ".ipynb")):
        for prefix in prefixes:
            data = data.replace(prefix.encode(), b"")
    dst = os.path.join(root, rel)
    if os.path.isfile(dst) and open(dst, "rb").read() == data:
        continue
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst + ".publish-tmp", "wb") as f:
        f.write(data)
    os.replace(dst + ".publish-tmp", dst)
    copied.append(rel)
sys.stdout.write("".join(rel + "\0" for rel in copied))
'

# searching NAME: the pids of the `tuning_runs.sh run`s that run NAME (they name it, or no search at all), a line each.
# It may still be re-running recipes and winners after the last trial: a publish then would re-run them
# itself, in another worktree, and its report would not be of the recipe.json that run commits later.
searching() {
  ps -ww -eo pid=,args= | awk -v me="$$" -v name="$1" '
    $1 != me && $0 ~ /tuning_runs\.sh run( |$)/ {
      n = 0; hit = 0; for (i = 1; i <= NF; i++) if ($i == "run") { for (j = i + 1; j <= NF; j++) { n++; if ($j == name) hit = 1 } break }
      if (hit || n == 0) print $1
    }' || true
}

publish() {
  local name=${1:-} words args head study created=0 list rel new=() pid
  words=$(search_args "$name")
  study="results/tuning/$name"
  pid=$(searching "$name"); pid=${pid%%$'\n'*}
  if [[ -n "$pid" ]]; then  # a running search's recipe re-runs come after its last trial
    echo "error: tuning_runs.sh run is still running $name (pid $pid); publish once it has ended and saved" >&2; exit 2
  fi
  if [[ -n "$(git -C "$ROOT" status --porcelain -- "$study")" ]]; then  # never over a change not committed
    echo "error: $ROOT/$study has changes that are not committed; commit or remove them first" >&2; exit 2
  fi
  data_env
  "$ROOT/scripts/setup_env.sh"
  head=$(git -C "$ROOT" rev-parse --short=12 HEAD)
  COMMIT=$head WORKTREE="${PUBLISH_WORKTREE:-$(dirname "$ROOT")/publish-$head}"
  [[ -e "$WORKTREE" ]] || created=1
  worktree  # the records are committed: the worktree at HEAD holds them, and the publish adds only the report
  # what an interrupted publish left there is not this one's report: back to the commit (ignored runs stay)
  if git -C "$WORKTREE" ls-files --error-unmatch -- "$study" > /dev/null 2>&1; then
    git -C "$WORKTREE" checkout -q -- "$study"
  fi
  git -C "$WORKTREE" clean -fq -- "$study"
  eval "args=($words ${TUNING_EXTRA_ARGS:-})"
  echo "=== $name: publishing from $WORKTREE at $head: ${args[*]} --publish"
  (cd "$WORKTREE" && PYTHONPATH="$WORKTREE" "$WORKTREE/.venv/bin/python" -m lib.runner "${args[@]}" --publish < /dev/null)
  list=$(mktemp)
  "${PYTHON:-python3}" -c "$COPY_BACK" "$WORKTREE" "$ROOT" "$study" > "$list" || { rm -f "$list"; exit 1; }  # stdlib only
  while IFS= read -r -d '' rel; do new+=("$rel"); done < "$list"
  rm -f "$list"
  if (( ${#new[@]} )); then
    commit_paths "Publish the $name searches: report and notebook 07 from a clean worktree at $head" "${new[@]}"
    echo "committed ${#new[@]} file(s) of $study; next: python -m lib.report, then README's tuning block and docs/results.md"
  else
    echo "nothing changed under $study: it was published as it is"
  fi
  if (( created )); then git -C "$ROOT" worktree remove --force "$WORKTREE"; fi  # its runs: the records hold their numbers
}

main() {
  case "${1:-}" in
    run) shift; run "$@" ;;
    publish) shift; [[ $# == 1 ]] || { echo "usage: scripts/tuning_runs.sh publish SEARCH" >&2; exit 2; }; publish "$1" ;;
    restore) worktree; restore ;;
    save) worktree; save ;;
    list) printf '%s\n' "${SEARCHES[@]}" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;  # the header comment, whole
  esac
}
main "$@"; exit $?
