#!/usr/bin/env bash
# bench/peers.sh: vtl's dedup engine beside Borg and restic, on the same backup generations in
# the same run, with the ratios the design's targets are stated in (DESIGN.md section 6).
#
# Usage: bench/peers.sh [--generations N] [--root DIR] [--work DIR] [--max-bytes N] [--seed N]
#                       [--drop-caches] [--keep] [--no-vtl] [--vtl-json FILE] [--vtl-args "..."]
#                       [--borg-encryption MODE] [--sample-on-disk]
#
#   --sample-on-disk read the sample tars where they are kept (--work) instead of from a copy in
#                    /dev/shm (see Noise).
#   --borg-encryption MODE  Borg's `borg init --encryption` (default repokey: AES-CTR + HMAC,
#                    encrypted like vtl and restic; `none` for Borg without encryption).
#   --generations N  tar generations to back up (default 2): generation 1 is a tar of --root,
#                    each later one has about 2% of its files changed, some deleted, some added
#                    (src/cli/sample.ts). Default root /usr, capped at --max-bytes (1.5 GiB).
#   --work DIR       sample tars, repositories and logs (default ${TMPDIR:-/tmp}/vtl-peers). The
#                    sample is reused by the next run with the same root, generations, seed and
#                    cap; the repositories are deleted at the end unless --keep.
#   --vtl-json FILE  take vtl's figures from an earlier `vtl bench dedup --json` output instead of
#                    running it (the table then says so: those are not from this run).
#   --vtl-args "..." extra arguments for `vtl bench dedup` (e.g. "--chunk-avg 8192").
#
# Steps: generate the sample once; `vtl bench dedup --json FILE...` (dist/cli/main.js when built,
# else src/cli/main.ts through tsx), with its peak RSS from GNU time; then per generation Borg 1.2
# (`borg create --compression lz4` from stdin, default 2 MiB chunker; `borg extract --stdout`),
# Borg again with 8 KiB chunks (`--chunker-params 10,23,13,4095`, ingest and stored bytes only),
# and restic (`restic backup --stdin`, `restic dump`, its default compression). Stored bytes of
# a peer are `du -sb` of its repository after all generations. A peer that is not installed is
# skipped: apt-get install borgbackup restic time.
#
# Noise: this runs on a 2-core machine that other processes may share. Borg is single-threaded,
# restic and vtl use both cores, so a busy neighbour hurts them differently: look at `uptime`
# (printed) and repeat a run whose load average was high. Every step reads its tar from memory:
# the tars are copied to /dev/shm (tmpfs) first, because this VM's page cache does not keep them
# (measured: a 1.6 GB tar read a minute earlier was 0% cached with 22 GB free, and 300 MB of it
# went within 20 s of reading it), so tars on disk would make every rate the disk's read rate
# (about 470 MB/s here) and favour a step that runs right after another read the same file.
# `sync` runs before each timed step so no step pays for an earlier step's writeback.
# --drop-caches (root only; implies --sample-on-disk) empties the page cache before each step,
# for cold-read figures; then the tar's read speed is in the rates.
# Fresh memory: this VM hands freed memory back to its host (free page reporting; a DAMON
# pageout scheme also runs), and the host faults each page in again at its next use: writing
# 785 MB into new page cache took 1.1 s of kernel time, into pages freed a moment earlier 0.1 s.
# So an ingest that grows the page cache pays by how long ago memory was freed. vtl keeps its
# sealed containers cached and takes new pages; Borg drops its segments from the cache after each
# sync, and its next writes reuse those pages. vtl dropping its sealed containers the same way
# (tried, not kept) measured in two pairs of runs: gen-1 ingest 308 -> 362 and 318 -> 339 MB/s,
# gen-1 restore 1359 -> 875 and 1434 -> 759 MB/s (read back from disk into fresh memory).
# Tried again later (posix_fadvise DONTNEED after each seal's fsync, in a small addon), three
# alternating whole runs of this script: gen-1 ingest vs Borg 1.26x, 1.28x without, 1.49x with
# (1.61x in a fourth); restore vs Borg 2.85x, 2.86x without, 2.21x with (2.05x, 2.39x in two
# more). Reading the containers back with O_DIRECT did not make the restore from disk faster.
# Still not kept: it moves a target it does not reach either way and thins one that passes.
# MB means 10^6 bytes throughout.
set -euo pipefail

GENERATIONS=2
ROOT=/usr
WORK="${TMPDIR:-/tmp}/vtl-peers"
MAX_BYTES=$((3 * 2 ** 29)) # 1.5 GiB
SEED=1
DROP_CACHES=0
SAMPLE_ON_DISK=0
KEEP=0
BORG_ENCRYPTION=repokey
RUN_VTL=1
VTL_JSON=""
VTL_ARGS=""

usage() { sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "peers.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --generations) GENERATIONS="${2:?}"; shift 2 ;;
    --root) ROOT="${2:?}"; shift 2 ;;
    --work) WORK="${2:?}"; shift 2 ;;
    --max-bytes) MAX_BYTES="${2:?}"; shift 2 ;;
    --seed) SEED="${2:?}"; shift 2 ;;
    --drop-caches) DROP_CACHES=1; SAMPLE_ON_DISK=1; shift ;;
    --sample-on-disk) SAMPLE_ON_DISK=1; shift ;;
    --keep) KEEP=1; shift ;;
    --borg-encryption) BORG_ENCRYPTION="${2:?}"; shift 2 ;;
    --no-vtl) RUN_VTL=0; shift ;;
    --vtl-json) VTL_JSON="${2:?}"; RUN_VTL=0; shift 2 ;;
    --vtl-args) VTL_ARGS="${2:?}"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "peers.sh: unknown argument $1" >&2; usage 2 ;;
  esac
done

[[ "$GENERATIONS" =~ ^[1-9][0-9]*$ ]] || die "--generations must be a positive integer"
[[ "$MAX_BYTES" =~ ^[1-9][0-9]*$ ]] || die "--max-bytes must be a positive integer"
[[ "$SEED" =~ ^-?[0-9]+$ ]] || die "--seed must be an integer"
[[ -d "$ROOT" ]] || die "--root $ROOT is not a directory"
[[ -z "$VTL_JSON" || -f "$VTL_JSON" ]] || die "--vtl-json $VTL_JSON not found"
if [[ $DROP_CACHES == 1 && ! -w /proc/sys/vm/drop_caches ]]; then die "--drop-caches needs root"; fi

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
SAMPLE="$WORK/sample"
RESULTS="$WORK/results.tsv"
LOG="$WORK/peers.log"
: >"$RESULTS"
: >"$LOG"
GNU_TIME=""
LOG_MARK=0
if [[ -x /usr/bin/time ]] && /usr/bin/time -f %M true >/dev/null 2>&1; then GNU_TIME=/usr/bin/time; fi

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }
note() { echo "== $*"; }

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# timed IN OUT CMD...: runs CMD with stdin IN and stdout OUT; sets ELAPSED (s) and RSS_KB.
# Returns CMD's status; its stderr goes to the log.
timed() {
  local in="$1" out="$2" t0 t1 rc=0
  shift 2
  sync
  if [[ $DROP_CACHES == 1 ]]; then drop_caches; fi
  echo "+ $*" >>"$LOG"
  LOG_MARK=$(wc -l <"$LOG")
  t0=$(date +%s%N)
  if [[ -n "$GNU_TIME" ]]; then
    "$GNU_TIME" -f %M -o "$WORK/.rss" "$@" <"$in" >"$out" 2>>"$LOG" || rc=$?
    RSS_KB=$(tail -n 1 "$WORK/.rss")
  else
    "$@" <"$in" >"$out" 2>>"$LOG" || rc=$?
    RSS_KB=""
  fi
  t1=$(date +%s%N)
  ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  return $rc
}

fail_step() {
  echo "   FAILED: $* (from $LOG:)"
  # The error line, when the tool printed one, else the last lines.
  local step
  step="$(tail -n "+$((LOG_MARK + 1))" "$LOG")"
  { grep -i -m 3 'error' <<<"$step" || tail -n 5 <<<"$step"; } | sed 's/^/     /'
}

dir_bytes() { du -sb "$1" | cut -f1; }

# ---- the sample -------------------------------------------------------------------------------
make_sample() {
  local params="root=$ROOT generations=$GENERATIONS seed=$SEED maxBytes=$MAX_BYTES"
  if [[ -f "$SAMPLE/params" && "$(cat "$SAMPLE/params")" == "$params" ]]; then
    note "sample: reusing $SAMPLE ($params)"
  else
    note "sample: generating $GENERATIONS generation(s) of $ROOT into $SAMPLE"
    rm -rf "$SAMPLE"
    mkdir -p "$SAMPLE"
    local t0 t1
    t0=$(date +%s%N)
    (cd "$REPO_DIR" && node --import tsx --input-type=module -e "
      import { generateSampleDetailed } from './src/cli/sample.ts';
      const [root, outDir, generations, seed, maxBytes] = process.argv.slice(1);
      const r = await generateSampleDetailed({ root, outDir, generations: Number(generations),
        seed: Number(seed), maxBytes: Number(maxBytes) });
      for (const g of r.generations) console.log('   ' + g.file.split('/').pop() + ': ' + g.entries +
        ' entries, ' + (g.contentBytes / 1e6).toFixed(0) + ' MB content, changed ' + g.changed +
        ', deleted ' + g.deleted + ', added ' + g.added);
      console.log('   left out: ' + r.skippedByCap + ' by the cap, ' + r.skippedSpecial +
        ' special, ' + r.skippedUnreadable + ' unreadable');
    " "$ROOT" "$SAMPLE" "$GENERATIONS" "$SEED" "$MAX_BYTES") || die "sample generation failed"
    t1=$(date +%s%N)
    echo "$params" >"$SAMPLE/params"
    awk -v a="$t0" -v b="$t1" -v n="$(cat "$SAMPLE"/gen-*.tar | wc -c)" \
      'BEGIN { printf "   wrote %.0f MB in %.1f s (%.0f MB/s)\n", n / 1e6, (b - a) / 1e9, n / 1e6 / ((b - a) / 1e9) }'
  fi
  FILES=("$SAMPLE"/gen-*.tar)
  [[ ${#FILES[@]} == "$GENERATIONS" ]] || die "expected $GENERATIONS tars in $SAMPLE, found ${#FILES[@]}"
  local g=1 f
  for f in "${FILES[@]}"; do
    record sample "$g" bytes "$(stat -c %s "$f")"
    g=$((g + 1))
  done
}

# Copies the sample tars to tmpfs and points FILES at the copies (removed on exit).
sample_to_memory() {
  [[ $SAMPLE_ON_DISK == 0 ]] || return 0
  local need avail
  need=$(stat -c %s "${FILES[@]}" | awk '{ s += $1 } END { printf "%.0f", s }')
  avail=$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -n 1 || echo 0)
  if ((avail < need + need / 10)); then
    note "sample: /dev/shm has too little room ($avail bytes free); reading the tars from disk"
    return 0
  fi
  MEMORY_SAMPLE="$(mktemp -d /dev/shm/vtl-peers.XXXXXX)"
  trap 'rm -rf "$MEMORY_SAMPLE"' EXIT
  cp "${FILES[@]}" "$MEMORY_SAMPLE"/
  FILES=("$MEMORY_SAMPLE"/gen-*.tar)
  note "sample: read from a copy in $MEMORY_SAMPLE (tmpfs)"
}

# ---- vtl --------------------------------------------------------------------------------------
run_vtl() {
  if [[ -n "$VTL_JSON" ]]; then
    note "vtl: figures from $VTL_JSON (not measured in this run)"
    cp "$VTL_JSON" "$WORK/vtl.json"
    record vtl 0 source "file:$VTL_JSON"
    return
  fi
  if [[ $RUN_VTL == 0 ]]; then note "vtl: skipped (--no-vtl)"; return; fi
  local cmd runner
  if [[ -f "$REPO_DIR/dist/cli/main.js" ]]; then
    cmd=("$REPO_DIR/src/cli/vtl") runner=dist # the launcher, as an installed vtl runs
  else
    # tsx compiles on the fly and adds its loader's memory to the peak RSS.
    local -a options
    read -ra options <<< "$(sed -n "s/^node_options='\(.*\)'$/\1/p" "$REPO_DIR/src/cli/vtl")"
    cmd=(node "${options[@]}" --import tsx "$REPO_DIR/src/cli/main.ts") runner=tsx
  fi
  note "vtl: ${cmd[*]} bench dedup --json ${VTL_ARGS:+$VTL_ARGS }<${#FILES[@]} files>"
  # shellcheck disable=SC2086 # VTL_ARGS is a list of words
  if timed /dev/null "$WORK/vtl.json" "${cmd[@]}" bench dedup --json $VTL_ARGS "${FILES[@]}"; then
    record vtl 0 source run
    record vtl 0 runner "$runner"
    record vtl 0 wall_s "$ELAPSED"
    record vtl 0 rss_kb "$RSS_KB"
  else
    fail_step "vtl bench dedup"
    rm -f "$WORK/vtl.json"
  fi
}

# ---- Borg -------------------------------------------------------------------------------------
# run_borg NAME RESTORE CREATE-ARGS...: one repository, every generation in order.
run_borg() {
  local name="$1" restore="$2" repo="$WORK/$1-repo" g=1 f
  shift 2
  # Encrypted like vtl (and restic) unless --borg-encryption says otherwise: comparing an
  # encrypting store with a plain one would flatter the plain one.
  export BORG_BASE_DIR="$WORK/borg-home" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_PASSPHRASE=vtl-peers-benchmark
  rm -rf "$repo"
  borg init --encryption="$BORG_ENCRYPTION" "$repo" >>"$LOG" 2>&1 || { fail_step "borg init"; return; }
  note "$name: borg init --encryption=$BORG_ENCRYPTION; borg create $* (then$([[ $restore == 1 ]] || echo " no") extract --stdout)"
  for f in "${FILES[@]}"; do
    if ! timed "$f" /dev/null borg create "$@" --stdin-name "$(basename "$f")" "$repo::g$g" -; then
      fail_step "borg create g$g"; return
    fi
    record "$name" "$g" ingest_s "$ELAPSED"
    record "$name" "$g" rss_kb "$RSS_KB"
    if [[ $restore == 1 ]]; then
      if ! timed /dev/null /dev/null borg extract --stdout "$repo::g$g"; then
        fail_step "borg extract g$g"; return
      fi
      record "$name" "$g" restore_s "$ELAPSED"
      record "$name" "$g" rss_kb "$RSS_KB"
    fi
    g=$((g + 1))
  done
  record "$name" 0 stored "$(dir_bytes "$repo")"
}

run_borgs() {
  if ! command -v borg >/dev/null; then
    note "borg: not installed, skipped (apt-get install borgbackup restic)"
    return
  fi
  record borg 0 version "$(borg --version)"
  run_borg borg 1 --compression lz4
  run_borg borg8k 0 --compression lz4 --chunker-params 10,23,13,4095
}

# ---- restic -----------------------------------------------------------------------------------
run_restic() {
  if ! command -v restic >/dev/null; then
    note "restic: not installed, skipped (apt-get install borgbackup restic)"
    return
  fi
  local g=1 f name
  export RESTIC_REPOSITORY="$WORK/restic-repo" RESTIC_PASSWORD_FILE="$WORK/restic-password"
  export RESTIC_CACHE_DIR="$WORK/restic-cache"
  rm -rf "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR"
  echo "vtl-peers-benchmark" >"$RESTIC_PASSWORD_FILE"
  record restic 0 version "$(restic version)"
  restic init >>"$LOG" 2>&1 || { fail_step "restic init"; return; }
  note "restic: backup --stdin, then dump"
  for f in "${FILES[@]}"; do
    name="$(basename "$f")"
    if ! timed "$f" /dev/null restic backup --quiet --host vtl-peers --tag "g$g" --stdin --stdin-filename "$name"; then
      fail_step "restic backup g$g"; return
    fi
    record restic "$g" ingest_s "$ELAPSED"
    record restic "$g" rss_kb "$RSS_KB"
    if ! timed /dev/null /dev/null restic dump --quiet --host vtl-peers --tag "g$g" latest "/$name"; then
      fail_step "restic dump g$g"; return
    fi
    record restic "$g" restore_s "$ELAPSED"
    record restic "$g" rss_kb "$RSS_KB"
    g=$((g + 1))
  done
  record restic 0 stored "$(dir_bytes "$RESTIC_REPOSITORY")"
}

# ---- main -------------------------------------------------------------------------------------
cd "$REPO_DIR" # tsx resolves from here; every other path is absolute
note "peers.sh on $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
make_sample
sample_to_memory
record sample 0 root "$ROOT"
record sample 0 seed "$SEED"
run_vtl
run_borgs
run_restic
record host 0 load "$(cut -d' ' -f1-3 /proc/loadavg)"
echo
node "$REPO_DIR/bench/peers-report.mjs" "$RESULTS" "$WORK/vtl.json" "$WORK/peers.json"
if [[ $KEEP == 0 ]]; then
  rm -rf "$WORK"/borg-repo "$WORK"/borg8k-repo "$WORK"/restic-repo "$WORK"/restic-cache "$WORK"/borg-home
fi
echo "(sample kept in $SAMPLE for the next run; log $LOG; figures $WORK/peers.json)"
