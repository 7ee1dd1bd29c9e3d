#!/usr/bin/env bash
# Regenerate the project's lock, runner/shipped/constraints.txt (constraints.txt at the top
# is a link to it; the wheel ships it, and every run.json records its hash), from
# pyproject.toml alone: exactly the packages `pip install -e ".[test,deepspeed,gguf]"` installs,
# with the CPU build of torch (2.13.0+cpu; pip finds it through its configured find-links
# or --extra-index-url https://download.pytorch.org/whl/cpu).
#
#   pip install pip-tools        # in any environment; it is not one of the project's packages
#   tools/lock.sh                # keep the current pins where they still fit
#   tools/lock.sh --upgrade      # move every package to its newest allowed version
#
# tests/test_lock.py fails when pyproject.toml and the lock disagree.
set -euo pipefail
cd "$(dirname "$0")/.."

FLAGS=(--allow-unsafe --extra=deepspeed --extra=gguf --extra=test --strip-extras
       --no-emit-find-links --no-emit-index-url --upgrade-package=torch==2.13.0)
OUT=runner/shipped/constraints.txt
CUSTOM_COMPILE_COMMAND="tools/lock.sh   (= pip-compile ${FLAGS[*]} --output-file=$OUT pyproject.toml)" \
    pip-compile --quiet "${FLAGS[@]}" --output-file="$OUT" "$@" pyproject.toml
