#!/usr/bin/env bash
# How many Compose files written by others pass `reconciler validate`, and what stops the rest.
#
#   git clone https://github.com/Haxxnet/Compose-Examples /tmp/corpus
#   bash bench/compose-corpus.sh /tmp/corpus [path/to/reconciler]
#
# Each Compose file found under the corpus (any *compose*.yml / *.yaml that is not an override)
# becomes the only stack of a scratch repository, with the rest of its folder next to it (so its
# `.env`, config files and mounted folders are there). It is validated twice: with the host
# policy as shipped, and with every `--allow` value. A stack whose only problem is a service
# with `build:` and no `image:` cannot run on a host without building and is counted apart.
# No Docker needed; nothing outside a temp folder is written.
set -euo pipefail

corpus=${1:?usage: bench/compose-corpus.sh CORPUS_DIR [RECONCILER]}
bin=${2:-target/release/reconciler}
if [ ! -x "$bin" ]; then
    bin=target/debug/reconciler
fi
[ -x "$bin" ] || { echo "no reconciler binary: run cargo build first" >&2; exit 2; }

# Every --allow value the binary knows, read from its own help (cap:/device: forms left out).
allow=$("$bin" validate --help | sed -n 's/.*Loosen host policy (comma list, repeatable): //p' |
    tr ',' '\n' | sed 's/^ *//; s/ *$//' | grep -v '[<:]' | paste -sd, -)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One line per distinct reason in a file: location, service names and quoted values blurred.
blur() {
    sed -E 's/^ *[^:]*:[0-9]+: //; s/services\.[^.: ]+/services.*/; s/\[[0-9,]+\]//g; s/'"'"'[^'"'"']*'"'"'/'"'"'…'"'"'/g' | sort -u
}

total=0 strict=0 loose=0 build_only=0
: >"$work/problems"
: >"$work/strict"
while IFS= read -r -d '' file; do
    total=$((total + 1))
    dir=$(dirname "$file")
    repo="$work/repo-$total"
    stack="$repo/s$total"
    mkdir -p "$repo"
    cp -a "$dir" "$stack"
    # The file under a name discovery finds, and no other Compose file beside it.
    find "$stack" -maxdepth 1 -type f -iname '*compose*.y*ml' ! -samefile "$stack/$(basename "$file")" -delete
    case "$(basename "$file")" in
        compose.yaml | compose.yml | docker-compose.yaml | docker-compose.yml) ;;
        *) mv "$stack/$(basename "$file")" "$stack/compose.yaml" ;;
    esac
    state="$work/state-$total"
    if strict_out=$("$bin" -q validate --repo "$repo" --state-dir "$state" 2>&1); then
        strict=$((strict + 1))
    else
        # A file whose only problem is `build:` leaves no line here (grep -v finds none).
        strict_problems=$(printf '%s\n' "$strict_out" | grep -E '^  ' || printf '  %s\n' "$strict_out")
        printf '%s\n' "$strict_problems" | { grep -v "'build' is not supported" || true; } | blur >>"$work/strict"
    fi
    out=$("$bin" -q validate --repo "$repo" --state-dir "$state" --allow "$allow" 2>&1) && code=0 || code=$?
    if [ "$code" = 0 ]; then
        loose=$((loose + 1))
    else
        problems=$(printf '%s\n' "$out" | grep -E '^  ' || printf '  %s\n' "$out")
        if ! printf '%s\n' "$problems" | grep -vq "'build' is not supported"; then
            build_only=$((build_only + 1))
        else
            # One line per distinct reason in this file, service names and values blurred.
            printf '%s\n' "$problems" | grep -v "'build' is not supported" | blur >>"$work/problems"
        fi
    fi
    rm -rf "$repo" "$state"
done < <(find "$corpus" -path '*/.git' -prune -o -type f -iname '*compose*.y*ml' ! -iname '*override*' -print0 | sort -z)

runnable=$((total - build_only))
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.0f%%", 100 * a / b }'; }
echo "corpus:        $corpus ($(git -C "$corpus" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout'))"
echo "binary:        $bin ($("$bin" --version 2>/dev/null || true))"
echo "compose files: $total ($build_only build-only, set aside)"
echo "pass, host policy as shipped:  $strict of $runnable ($(pct "$strict" "$runnable"))"
echo "pass, every --allow given:     $loose of $runnable ($(pct "$loose" "$runnable"))"
echo
echo "what stops the others, host policy as shipped (files per reason):"
sort "$work/strict" | uniq -c | sort -rn
echo
echo "what stops the others, every --allow given (files per reason):"
sort "$work/problems" | uniq -c | sort -rn
