#!/usr/bin/env bash
# The example agent image's entrypoint (docs/agent-image.md is the contract it follows).
#
# In:  $TASK_DIR with TASK.md (or the task's *.md files), TASK_ID, TASK_CONTEXT_VERSION;
#      ANTHROPIC_API_KEY; optionally CODE_REPO_URL (+ GIT_TOKEN, CODE_REPO_BRANCH) to change code.
# Out: a one-line result (at most 4 KiB) in $TERMINATION_MESSAGE_PATH (default
#      /dev/termination-log), the agent's output on stdout, and the exit code:
#      0 done, 1 the agent failed (retried up to the profile's backoffLimit),
#      2 the image is misconfigured (missing key, no task files; a retry will not help).
set -euo pipefail

AGENT_CLI="${AGENT_CLI:-claude}"
task_dir="${TASK_DIR:-/workspace/task}"
result_file="${TERMINATION_MESSAGE_PATH:-/dev/termination-log}"
task_id="${TASK_ID:-0}"
version="${TASK_CONTEXT_VERSION:-0}"
work="${AGENT_WORKDIR:-$HOME/work}"

# Writes the result (the kubelet keeps at most 4096 bytes) and echoes it to the log.
result() {
  local text
  # `|| true`: head stops reading at 4000 bytes, and the writer's SIGPIPE must not end the script.
  text="$(printf '%s' "$*" | tr '\n' ' ' | head -c 4000 || true)"
  printf '%s\n' "$text" > "$result_file" || true
  printf 'result: %s\n' "$text"
}

fail() {
  local code="$1"
  shift
  result "$*"
  exit "$code"
}

[ -n "${ANTHROPIC_API_KEY:-}" ] \
  || fail 2 "ANTHROPIC_API_KEY is not set: give the profile an env from the agent-credentials Secret"

# The task: TASK.md when orchestrator generated one, else every markdown file, prompt.md first.
prompt_file="$(mktemp)"
output="$(mktemp)"
trap 'rm -f "$prompt_file" "$output"' EXIT
if [ -f "$task_dir/TASK.md" ]; then
  cat "$task_dir/TASK.md" > "$prompt_file"
else
  shopt -s nullglob
  files=("$task_dir"/*.md)
  [ "${#files[@]}" -gt 0 ] || fail 2 "no task files in $task_dir"
  [ -f "$task_dir/prompt.md" ] && cat "$task_dir/prompt.md" > "$prompt_file"
  for f in "${files[@]}"; do
    [ "$(basename "$f")" = prompt.md ] && continue
    printf '\n\n# %s\n\n' "$(basename "$f")" >> "$prompt_file"
    cat "$f" >> "$prompt_file"
  done
fi
[ -s "$prompt_file" ] || fail 2 "the task in $task_dir is empty"

# The code repository, when the profile names one. The token goes through a credential helper
# reading the environment, so it is never part of a URL, a git config file or the log.
branch=""
if [ -n "${CODE_REPO_URL:-}" ]; then
  export GIT_TERMINAL_PROMPT=0
  git config --global credential.helper \
    '!f() { test -n "$GIT_TOKEN" && echo username=x-access-token && echo "password=$GIT_TOKEN"; }; f'
  git config --global user.name "${GIT_AUTHOR_NAME:-orchestrator agent}"
  git config --global user.email "${GIT_AUTHOR_EMAIL:-agent@orchestrator.invalid}"
  rm -rf "$work"
  clone_args=(--depth 50)
  [ -n "${CODE_REPO_BRANCH:-}" ] && clone_args+=(--branch "$CODE_REPO_BRANCH")
  git clone --quiet "${clone_args[@]}" "$CODE_REPO_URL" "$work" \
    || fail 1 "cannot clone $CODE_REPO_URL (check CODE_REPO_URL and GIT_TOKEN)"
  branch="orchestrator/task-$task_id-v$version"
  git -C "$work" checkout --quiet -B "$branch"
  cd "$work"
fi

# The agent itself: the task on stdin (no argument length limit), a short instruction as the
# prompt, one JSON object with the answer on stdout.
instruction="${AGENT_INSTRUCTION:-Carry out the task given on stdin in the current directory. Finish with a one-line summary of what you did.}"
set +e
"$AGENT_CLI" -p "$instruction" --output-format json --permission-mode acceptEdits \
  < "$prompt_file" > "$output"
status=$?
set -e
cat "$output"
summary="$(jq -r '.result // empty' "$output" 2>/dev/null | head -n 1 || true)"
is_error="$(jq -r '.is_error // false' "$output" 2>/dev/null || echo true)"
if [ "$status" -ne 0 ] || [ "$is_error" = true ]; then
  fail 1 "the agent failed (exit $status): ${summary:-no result}"
fi

if [ -n "$branch" ]; then
  git add -A
  if git diff --cached --quiet; then
    result "no changes: ${summary:-done}"
  else
    git commit --quiet -m "Task $task_id (context version $version): ${summary:-agent changes}"
    git push --quiet --force origin "$branch" \
      || fail 1 "cannot push $branch to $CODE_REPO_URL (does GIT_TOKEN allow pushing?)"
    result "pushed $branch: ${summary:-done}"
  fi
else
  result "${summary:-done}"
fi
