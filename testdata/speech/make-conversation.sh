#!/usr/bin/env bash
# Regenerates conversation.8k.wav: a caller's side of a call with the
# `reception` agent in hark.toml (name, party size, time, "yes"), spoken by
# espeak-ng with pauses long enough for the agent's replies. The WAV is
# committed; run this (needs espeak-ng and sox) only to change it.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# pause before each answer (ms), then the answer
turns=(
  "5000|My name is Anna."
  "4000|Four people, please."
  "4000|At seven thirty."
  "8000|Yes, that's right."
)
files=()
i=0
for t in "${turns[@]}"; do
  gap=${t%%|*}; text=${t#*|}
  sox -n -r 8000 -c 1 -b 16 "$tmp/gap$i.wav" trim 0 "$(echo "$gap/1000" | bc -l)"
  espeak-ng -v en-us -s 160 -w "$tmp/raw$i.wav" "$text"
  sox "$tmp/raw$i.wav" -r 8000 -c 1 -b 16 -e signed-integer "$tmp/say$i.wav" \
    silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse
  files+=("$tmp/gap$i.wav" "$tmp/say$i.wav")
  i=$((i + 1))
done
sox -n -r 8000 -c 1 -b 16 "$tmp/tail.wav" trim 0 4
sox "${files[@]}" "$tmp/tail.wav" conversation.8k.wav
echo "wrote conversation.8k.wav ($(soxi -d conversation.8k.wav))"
