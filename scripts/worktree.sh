# Sourced by scripts/confirmatory_runs.sh and scripts/tuning_runs.sh: the clean git worktree at a fixed
# commit that each trains from, and the loop that saves finished work while it trains. bash reads a
# sourced file whole, so editing this one cannot change what a script that has already sourced it runs.

# clean_worktree ROOT WORKTREE COMMIT [PATH...]
#   Make WORKTREE a detached worktree of ROOT's repository at COMMIT (unless it exists), sharing ROOT's
#   .venv, and stop (exit 2) unless it is a clean checkout of COMMIT. Changes under the PATHs (relative
#   to the worktree: what the caller restores into it, not code) do not count as dirty. Stop too where a
#   package pin of COMMIT's is not among ROOT's (the worktree trains with ROOT's .venv).
clean_worktree() {
  local root=$1 tree=$2 commit=$3 exclude path
  shift 3
  local ignored=()
  if [[ ! -d "$tree" ]]; then git -C "$root" worktree add --detach "$tree" "$commit"; fi
  [[ -e "$tree/.venv" || -L "$tree/.venv" ]] || ln -s "$root/.venv" "$tree/.venv"
  # the link is not code: keep it out of the worktree's git status (and so out of "dirty"); git names
  # its common dir relative to ROOT, hence the cd
  exclude="$(cd "$root" && cd "$(git rev-parse --git-common-dir)" && pwd)/info/exclude"
  grep -qx ".venv" "$exclude" 2>/dev/null || echo ".venv" >> "$exclude"
  for path in "$@"; do ignored+=(":!$path"); done
  # ${a[@]+...}: an empty array under set -u in bash before 4.4 (macOS)
  if [[ -n "$(git -C "$tree" status --porcelain -- . ${ignored[@]+"${ignored[@]}"})" ||
        "$(git -C "$tree" rev-parse HEAD)" != "$(git -C "$root" rev-parse --verify -q "$commit^{commit}")" ]]; then
    echo "error: $tree is not a clean checkout of $commit" >&2; exit 2
  fi
  # the worktree trains with ROOT's .venv, which scripts/setup_env.sh installs from ROOT's pins: a pin of
  # COMMIT's that ROOT no longer has (a version changed since) would make its runs other than its files say
  local file lost
  for file in requirements.txt requirements-nodeps.txt; do
    lost=$(comm -23 <(git -C "$root" show "$commit:$file" 2>/dev/null | grep -E '^[^#[:space:]]' | sort -u) \
                    <(grep -E '^[^#[:space:]]' "$root/$file" 2>/dev/null | sort -u) | paste -sd ' ' -)
    if [[ -n "$lost" ]]; then
      echo "error: $commit pins $lost in $file and $root/$file no longer does; $tree trains with" \
           "$root/.venv, installed from the latter: train from a commit with the same pins" >&2
      exit 2
    fi
  done
}

# keep_saving
#   While the caller trains, run its `save` every $SAVE_EVERY seconds (default 300), and once more when it
#   exits, however it exits; Ctrl-C or TERM end it with status 130 once the command in progress returns (the
#   EXIT trap still saves: stop the trainer too, as a session's end does), so a
#   stopped session loses at most the work in progress.
keep_saving() {
  local parent=$$  # the loop ends with the script, even one killed with no chance to run its EXIT trap
  ( while sleep "${SAVE_EVERY:-300}" && kill -0 "$parent" 2>/dev/null; do save || true; done ) &
  SAVER=$!
  trap 'kill "$SAVER" 2>/dev/null; save || true' EXIT
  trap 'exit 130' INT TERM
}

# uncommitted ROOT PATH...: the files at or under the PATHs that ROOT's HEAD does not hold as they are
# (new, ignored or not, or changed), relative to ROOT. A save commits these rather than only what it
# copied itself: a copy whose commit failed (an index.lock held, a kill between copy and commit) is
# identical to its source, and the next save would otherwise skip it for good.
uncommitted() {
  local root=$1
  shift
  # -z: names as they are (git quotes a name with other than ASCII letters otherwise)
  { git -C "$root" ls-files -z --others -- "$@"; git -C "$root" diff -z --name-only HEAD -- "$@"; } | tr '\0' '\n' \
    | sort -u
}

# commit_uncommitted MESSAGE PATH...: commit (commit_paths) the files at or under the PATHs that ROOT's HEAD
# does not hold as they are, "{n}" in MESSAGE replaced by their count, which COMMITTED holds after (0: none)
commit_uncommitted() {
  local message=$1 file pending=()
  shift
  COMMITTED=0
  while IFS= read -r file; do pending+=("$ROOT/$file"); done < <(uncommitted "$ROOT" "$@")  # no mapfile: bash 3.2
  (( ${#pending[@]} )) || return 0
  commit_paths "${message//\{n\}/${#pending[@]}}" "${pending[@]}"
  COMMITTED=${#pending[@]}
}

# commit_paths MESSAGE PATH...: add (or, where a path is gone, remove) and commit only these in $ROOT,
# waiting out another commit's index.lock (a saver's, the user's) for up to a minute; status 1 if it never could
commit_paths() {
  local message=$1 tries=1 most=${COMMIT_TRIES:-20}  # COMMIT_TRIES: tests
  shift
  until git -C "$ROOT" add -A -f -- "$@" && git -C "$ROOT" commit -q -m "$message" -- "$@"; do
    (( tries < most )) || { echo "error: could not commit $* (copied, not committed; the next save tries again)" >&2; return 1; }
    tries=$((tries + 1)); sleep 3
  done
}
