#!/usr/bin/env bash
# A fuzzing campaign: every libFuzzer target (or those named) run, coverage-guided, for SECONDS
# each, over its corpus; the corpus is then minimised (-merge) into crates/fuzz/corpus/<target>/,
# which `cargo test` replays (crates/fuzz/tests/mutations.rs), and one Markdown row per target
# is printed: executions, coverage (edges, features), corpus size, crashes. Crashes are kept in
# target/fuzz-campaign/<target>/crashes/ for a reader to turn into a regression test.
#
#   fuzz/campaign.sh 600                 # ten minutes per target, one at a time
#   JOBS=2 fuzz/campaign.sh 60 diff time # two targets side by side
#
# Builds the targets as crates/fuzz/tests/libfuzzer.rs does (stable Rust, no sanitizer,
# overflow checks and debug assertions on); needs a C++ compiler for libfuzzer-sys.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: fuzz/campaign.sh SECONDS [TARGET...]}
shift
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
    cargo build --release --locked --target "$host" --manifest-path fuzz/Cargo.toml \
    --target-dir target/fuzz >&2
bin=target/fuzz/$host/release
if [ $# -eq 0 ]; then
    set -- $(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^nospy-fuzz-libfuzzer$')
fi
work=target/fuzz-campaign
mkdir -p "$work"

run_one() {
    local t=$1 dir=$work/$1
    rm -rf "$dir/run" && mkdir -p "$dir/run" "$dir/crashes" "crates/fuzz/corpus/$t"
    local seeds=()
    [ -d "crates/fuzz/seeds/$t" ] && seeds+=("crates/fuzz/seeds/$t")
    # The campaign: new inputs go to run/, the committed corpus and the seeds are read.
    "$bin/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$dir/crashes/" \
        "$dir/run" "crates/fuzz/corpus/$t" "${seeds[@]}" >"$dir/log" 2>&1 || true
    # Minimised into the committed corpus.
    mkdir -p "$dir/merged"
    rm -rf "$dir/merged"/*
    "$bin/$t" -merge=1 -max_len=65536 "$dir/merged" "crates/fuzz/corpus/$t" "$dir/run" \
        >"$dir/merge.log" 2>&1 || true
    rm -rf "crates/fuzz/corpus/$t" && mv "$dir/merged" "crates/fuzz/corpus/$t"
    local execs edges ft corpus crashes
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
    edges=$(grep -o 'cov: [0-9]*' "$dir/log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$dir/log" | tail -1 | cut -d' ' -f2)
    corpus=$(find "crates/fuzz/corpus/$t" -type f | wc -l)
    crashes=$(find "$dir/crashes" -type f | wc -l)
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$seconds" "${execs:-?}" \
        "${edges:-?}" "${ft:-?}" "$corpus" "$crashes"
}

echo "| target | seconds | executions | edges | features | corpus files | crashes |"
echo "|---|---|---|---|---|---|---|"
jobs=${JOBS:-1}
for t in "$@"; do
    run_one "$t" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
done
wait
