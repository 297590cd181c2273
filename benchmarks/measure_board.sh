#!/usr/bin/env bash
# Maintainers: re-measure the committed board from scratch, on fresh secret test instances.
#   bash benchmarks/measure_board.sh            (about 45 minutes on two CPU cores)
# 1. a fresh secret, held only in this process's environment, never written;
# 2. every default task's test instance built from it and published into leaderboard/instances/;
# 3. every detector on those instances (make bench does the same from the published folders);
# 4. the shortcut baselines, the reference and chance on the dev instances (public spec and seed),
#    where the shortcuts are meant to win;
# 5. the board rendered.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BENCH=${BENCH:-.venv/bin/mmh-bench}
MMH_BENCH_TEST_SECRET=$($PY -c 'import secrets; print(secrets.token_hex(16))')
export MMH_BENCH_TEST_SECRET
rm -rf leaderboard/results leaderboard/instances
$PY benchmarks/publish_test_instances.py --tasks suite:default --out leaderboard/instances \
    | tee benchmarks/results/publish_test_instances.jsonl
unset MMH_BENCH_TEST_SECRET
time $BENCH run --tasks suite:default --detectors all
$BENCH run --tasks suite:default --detectors shortcut-sources,shortcut-condition,copy-rule,random --instances none
$BENCH leaderboard
