#!/usr/bin/env bash
# A task that reads through a lazyroot mount until told to stop, for the restart tests
# (tests/it/restart) and benchmark (scripts/bench-restart.sh): a chunked file kept open on
# descriptor 3 across every daemon restart (read with dd through that same descriptor, its
# pages dropped after each read so that the next one reaches the daemon), the file opened
# anew, and a directory of the tree listed and every file in it read and checked.
# Usage: restart-reader.sh MOUNT SOURCE STOPFILE, with BIG (the file's bytes), DIRS and FILES
# (the tree: SOURCE/tree/d<i>/f<j> holding "file <i>/<j>") in the environment. Prints
# `op START END` (bash's $EPOCHREALTIME) per operation, `FAIL ...` for anything wrong, and
# `rounds N` at the end.
set -u
export LC_ALL=C # "." as the decimal separator in $EPOCHREALTIME
mnt=$1; src=$2; stop=$3
exec 3< "$mnt/big" || { echo "FAIL opening big"; exit 1; }
round=0; pos=0
blocks=$(( BIG / 4096 ))
while [ ! -e "$stop" ]; do
  round=$((round + 1))
  # dd seeks its standard input relative to where it is: the kept descriptor moves
  # forward through the file, skipping a little each time, and is opened again at the end.
  jump=$(( round % 7 ))
  if [ $(( pos + jump + 64 )) -gt $blocks ]; then
    exec 3<&-; exec 3< "$mnt/big" || echo "FAIL round $round: opening big again"
    pos=0
  fi
  k=$(( pos + jump )); pos=$(( k + 64 ))
  t0=$EPOCHREALTIME
  if ! cmp -s <(dd bs=4096 skip=$jump count=64 iflag=fullblock,nocache status=none <&3) \
              <(dd if="$src/big" bs=4096 skip=$k count=64 status=none); then
    echo "FAIL round $round: the kept descriptor read wrong bytes at block $k"
  fi
  k=$(( (round * 2654435761) % (blocks - 16) ))
  t1=$EPOCHREALTIME; echo "op $t0 $t1"; t0=$t1
  if ! cmp -s <(dd if="$mnt/big" bs=4096 skip=$k count=16 iflag=fullblock,nocache status=none) \
              <(dd if="$src/big" bs=4096 skip=$k count=16 status=none); then
    echo "FAIL round $round: big opened anew read wrong bytes at block $k"
  fi
  t1=$EPOCHREALTIME; echo "op $t0 $t1"; t0=$t1
  d=$(( round % DIRS )); n=0
  for f in "$mnt/tree/d$d"/*; do
    want="file $d/${f##*/f}"
    got=$(cat "$f" 2>&1) || { echo "FAIL round $round: reading $f: $got"; continue; }
    [ "$got" = "$want" ] || echo "FAIL round $round: $f holds '$got'"
    n=$((n + 1))
  done
  [ "$n" = "$FILES" ] || echo "FAIL round $round: tree/d$d listed $n files"
  t1=$EPOCHREALTIME; echo "op $t0 $t1"
  if [ $((round % 16)) = 0 ]; then echo 2 > /proc/sys/vm/drop_caches; fi
done
echo "rounds $round"
