#!/usr/bin/env bash
# The byte corpus of the headline testbed (configs/corpus-testbed.cfg): real text that a Debian 12
# machine has after launch/setup.sh, in four kinds taken from named packages, packed by
# `temoe make-corpus` so that domains change inside a sequence (src/data/byte_corpus.hpp). Writes
# OUT_DIR/{train.h5,eval.h5} plus corpus.json (files and bytes per kind, the input's sha256),
# packages.txt (the package versions read) and SHA256SUMS (the two token files), and prints the
# sha256 of the corpus. The corpus is never committed; configs/corpus-testbed/model/ records the
# hashes of the one its model was trained on, and this script says whether it rebuilt the same.
#   bash launch/make_corpus.sh [OUT_DIR]      (default runs/corpus; TEMOE_BINARY=./build/temoe)
#
# As root, missing packages are installed with apt-get (as launch/setup.sh does); otherwise the
# script names them and stops.
set -Eeuo pipefail
trap 'status=$?; echo "make_corpus: line $LINENO: '\''$BASH_COMMAND'\'' failed with exit $status" >&2; exit $status' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-runs/corpus}
binary=${TEMOE_BINARY:-./build/temoe}
recorded=configs/corpus-testbed/model/corpus.sha256

# kind  package  the package's files that are of the kind (an extended regular expression on dpkg -L)
SOURCES=(
  "python         libpython3.11-stdlib  ^/usr/lib/python3\.11/.*\.py$"
  "c_header       libc6-dev             ^/usr/include/.*\.h$"
  "c_header       linux-libc-dev        ^/usr/include/.*\.h$"
  "perl           perl-modules-5.36     ^/usr/share/perl/5\.36\.0/.*\.pm$"
  "english_text   perl-modules-5.36     ^/usr/share/perl/5\.36\.0/.*\.pod$"
  "english_text   base-files            ^/usr/share/common-licenses/"
)
packages=$(for source in "${SOURCES[@]}"; do read -r _ package _ <<< "$source"; echo "$package"; done | sort -u)

missing=()
for package in $packages; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2> /dev/null | grep -q '^ii' || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get > /dev/null; then
    echo "make_corpus: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_log=$(mktemp "${TMPDIR:-/tmp}/temoe-apt.XXXXXX")
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } > "$apt_log" 2>&1; then
      cat "$apt_log" >&2 && rm -f "$apt_log"
      echo "make_corpus: 'apt-get install ${missing[*]}' failed (log above)" >&2
      exit 1
    fi
    rm -f "$apt_log"
  else
    echo "make_corpus: missing packages: ${missing[*]} (as root: apt-get install ${missing[*]}); the corpus is made" \
      "of their files, so nothing can be built without them" >&2
    exit 1
  fi
fi
if [[ ! -x $binary ]]; then
  echo "make_corpus: $binary not found: build temoe first (bash launch/setup.sh)" >&2
  exit 1
fi

mkdir -p "$out"
lists=$(mktemp -d "${TMPDIR:-/tmp}/temoe-corpus.XXXXXX")
trap 'rm -rf "$lists"' EXIT
kinds=()
: > "$out/packages.txt.tmp"
for source in "${SOURCES[@]}"; do
  read -r kind package pattern <<< "$source"
  # dpkg -L lists the package's directories and files; the pattern keeps the files of the kind.
  dpkg -L "$package" | grep -E "$pattern" | while read -r path; do [[ -f $path ]] && echo "$path"; done \
    >> "$lists/$kind.txt" || true
  [[ " ${kinds[*]} " == *" $kind "* ]] || kinds+=("$kind")
  dpkg-query -W -f='${Package} ${Version}\n' "$package" >> "$out/packages.txt.tmp"
done
sort -u "$out/packages.txt.tmp" > "$out/packages.txt" && rm -f "$out/packages.txt.tmp"
arguments=()
for kind in "${kinds[@]}"; do
  if [[ ! -s $lists/$kind.txt ]]; then
    echo "make_corpus: no files of kind $kind in its packages (see SOURCES in $0)" >&2
    exit 1
  fi
  arguments+=(--kind "$kind=@$lists/$kind.txt")
done

# Chunks of 192 to 768 bytes (cut at line ends) keep a domain for a few hundred tokens, so a
# 256-token sequence holds one or two of them.
"$binary" make-corpus "${arguments[@]}" --out-train "$out/train.h5" --out-eval "$out/eval.h5" \
  --min-chunk-bytes 192 --max-chunk-bytes 768 --document-bytes 4096 --eval-fraction 0.1 --seed 1 \
  --json "$out/corpus.json"
(cd "$out" && sha256sum train.h5 eval.h5 > SHA256SUMS)
corpus_sha=$(sed -n 's/.*"input_sha256": *"\([0-9a-f]*\)".*/\1/p' "$out/corpus.json")
echo "make_corpus: corpus sha256 (inputs) $corpus_sha"
sed 's/^/make_corpus: /' "$out/SHA256SUMS"
if [[ -f $recorded ]]; then
  if diff -q <(grep -v '^#' "$recorded") "$out/SHA256SUMS" > /dev/null; then
    echo "make_corpus: identical to the corpus the model was trained on ($recorded)"
  else
    echo "make_corpus: NOTE: differs from the corpus recorded in $recorded (other package versions?" \
      "compare configs/corpus-testbed/model/packages.txt with $out/packages.txt)" >&2
  fi
fi
