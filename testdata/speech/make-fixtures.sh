#!/usr/bin/env bash
# Regenerates the committed speech fixtures from sentences.tsv with espeak-ng
# and sox (Debian packages). The WAVs are committed; run this only to change
# them. Output:
#   <id>.8k.wav, <id>.16k.wav   one sentence, leading/trailing silence trimmed
#   manifest.tsv                file, rate, samples, reference text
#   turns.8k.wav + turns.tsv    three sentences separated by known silences,
#                               with the exact speech intervals (ms)
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf 'file\trate\tsamples\ttext\n' > manifest.tsv
grep -v '^#' sentences.tsv | while IFS=$'\t' read -r id voice wpm text; do
  espeak-ng -v "$voice" -s "$wpm" -w "$tmp/raw.wav" "$text"
  # Trim espeak's own lead-in and tail so the speech interval is the file.
  sox "$tmp/raw.wav" "$tmp/trim.wav" silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse
  for rate in 8000 16000; do
    f="$id.$((rate / 1000))k.wav"
    sox "$tmp/trim.wav" -r "$rate" -c 1 -b 16 -e signed-integer "$f"
    printf '%s\t%s\t%s\t%s\n' "$f" "$rate" "$(soxi -s "$f")" "$text" >> manifest.tsv
  done
done
# turns.8k.wav: 500 ms silence, sentence, 1500 ms, sentence, 1200 ms, sentence, 1000 ms.
parts=(book_table speak_person yes_please)
gaps=(500 1500 1200 1000)
printf 'start_ms\tend_ms\ttext\n' > turns.tsv
sox -n -r 8000 -c 1 -b 16 "$tmp/s0.wav" trim 0 "$(echo "${gaps[0]}/1000" | bc -l)"
files=("$tmp/s0.wav")
t=${gaps[0]}
for i in 0 1 2; do
  f="${parts[$i]}.8k.wav"
  len=$(( $(soxi -s "$f") / 8 ))
  text=$(awk -F'\t' -v f="$f" '$1 == f { print $4 }' manifest.tsv)
  printf '%s\t%s\t%s\n' "$t" "$((t + len))" "$text" >> turns.tsv
  t=$((t + len))
  gap=${gaps[$((i + 1))]}
  sox -n -r 8000 -c 1 -b 16 "$tmp/g$i.wav" trim 0 "$(echo "$gap/1000" | bc -l)"
  files+=("$f" "$tmp/g$i.wav")
  t=$((t + gap))
done
sox "${files[@]}" turns.8k.wav
echo "wrote $(ls *.wav | wc -l) WAVs"
