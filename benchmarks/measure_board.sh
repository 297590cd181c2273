#!/usr/bin/env bash
# Maintainers: re-measure the committed board from scratch, on fresh secret test instances.
#   bash benchmarks/measure_board.sh            (about an hour on two CPU cores)
#   STREAM_A=mmh-toy STREAM_B=syn2-cond bash benchmarks/measure_board.sh   (only those tasks; the
#   rest of the board stays as committed)
# 1. a fresh secret, held only in this process's environment, never written;
# 2. every default task's test instances built from it (three replicates of each synthetic task)
#    and published into leaderboard/instances/, in two single-threaded build streams at once
#    (mmh_bench.threads keeps each build on one core, so the two do not starve each other);
# 3. the dev instances built the same way (the shortcuts, the reference and chance run there);
# 4. every detector on the published instances (make bench does the same from those folders);
# 5. the shortcut baselines, the reference and chance on the dev instances (public spec and seed),
#    where the shortcuts are meant to win;
# 6. the board rendered.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BENCH=${BENCH:-.venv/bin/mmh-bench}
STREAM_A=${STREAM_A:-mmh-toy,syn10-od,syn100-dd,image-digits,t2i-digits,lid-mix10,lid-skdim}
STREAM_B=${STREAM_B:-syn2-cond,syn10-dd,syn10-cond,syn100-cond,image-digits-cond,lid-mix100,lid-skdim-high}
OUT=benchmarks/results
MMH_BENCH_TEST_SECRET=$($PY -c 'import secrets; print(secrets.token_hex(16))')
export MMH_BENCH_TEST_SECRET
TASKS=$STREAM_A,$STREAM_B
for t in ${TASKS//,/ }; do rm -rf leaderboard/results/$t leaderboard/instances/$t; done
t0=$(date +%s)
$PY benchmarks/publish_test_instances.py --tasks $STREAM_A --out leaderboard/instances > $OUT/publish_a.jsonl &
$PY benchmarks/publish_test_instances.py --tasks $STREAM_B --out leaderboard/instances > $OUT/publish_b.jsonl &
wait
unset MMH_BENCH_TEST_SECRET
cat $OUT/publish_a.jsonl $OUT/publish_b.jsonl > $OUT/publish_test_instances.jsonl
rm $OUT/publish_a.jsonl $OUT/publish_b.jsonl
echo "test instances built and published in $(( $(date +%s) - t0 )) s"
$BENCH build $STREAM_A -q > /dev/null &
$BENCH build $STREAM_B -q > /dev/null &
wait
echo "dev instances built at $(( $(date +%s) - t0 )) s"
time $BENCH run --tasks $TASKS --detectors all
$BENCH run --tasks $TASKS --detectors shortcut-sources,shortcut-condition,copy-rule,random --instances none
$BENCH leaderboard
echo "board measured in $(( $(date +%s) - t0 )) s"
