#!/usr/bin/env bash
# Long fuzz/property run of the desired-state parser and loader (tests/fuzz_desired.rs).
#   bash scripts/fuzz.sh [CASES]      (default 20000; FUZZ_SEED, FUZZ_SCALE (percent of full input sizes), FUZZ_MAX_SECS, FUZZ_MAX_RSS_MB
#                                      and FUZZ_PROFILE=release are honoured)
# Prints the cases run, the longest time one input took and the maximum RSS; exits non-zero on
# any failure (panic, unanswered input, an input over the time bound, RSS over the bound). A
# failing input is kept in target/fuzz-failures/.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_CASES="${1:-20000}"
export FUZZ_SCALE="${FUZZ_SCALE:-100}"
export FUZZ_SEED="${FUZZ_SEED:-$(date +%s)}"
profile=()
if [[ "${FUZZ_PROFILE:-dev}" == release ]]; then
  profile=(--release)
else
  # An unoptimized build is 10-20 times slower: the worst inputs (tens of thousands of keys in
  # one mapping) take a few seconds there on a loaded machine.
  export FUZZ_MAX_SECS="${FUZZ_MAX_SECS:-30}"
fi
[[ -x /usr/bin/time ]] || { echo "fuzz: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
echo "fuzz: ${FUZZ_CASES} cases, seed ${FUZZ_SEED} (replay with FUZZ_SEED=${FUZZ_SEED})"
# Run the test binary directly under /usr/bin/time so the RSS figure is the kernel's own.
binary=$(cargo test "${profile[@]}" --test fuzz_desired --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*fuzz_desired[^"]*\)".*/\1/p' | tail -1)
if [[ -z "$binary" ]]; then echo "fuzz: the test binary did not build" >&2; exit 1; fi
status=0
/usr/bin/time -f 'fuzz: process max RSS %M KiB, wall %e s' "$binary" --exact \
  parser_and_loader_answer_every_generated_and_mutated_input_in_bounded_time_and_memory \
  --nocapture || status=$?
if [[ $status -ne 0 ]]; then echo "fuzz: FAILED (exit $status); see target/fuzz-failures/" >&2; fi
exit $status
