#!/usr/bin/env bash
# convert-stream.sh: the stream of convert.sh, sourced by it, never run. The bundle's parts in
# manifest order (each one's SHA-1 checked as it passes) | AES-128-CBC decrypt | gunzip | SHA-1 of
# the tar stream | GNU tar writing the image member onto the target; then the stream's digest and
# the image's size are held to the manifest.
#
#   stream_image     runs the pipeline onto $stream_target; fails naming the stage that broke
#   check_image      the tar stream's SHA-1 and the image's size against the manifest; results
#                    image_bytes, bytes_written, digest
#
# The pipeline's stages are the functions below; each runs in its own subshell, so a stage says
# why it failed through a file in $work (note) that the main shell reads afterwards.
# shellcheck shell=bash disable=SC2154,SC2034 # work, parts_*, part_*, image_*, aes_*, target...: set by convert.sh; what this file sets, the others read

# note STAGE TEXT: why a pipeline stage failed (read by the main shell afterwards).
note() { printf '%s' "$2" >"$work/reason.$1"; }

# fetch_part NAME: one part's bytes on stdout.
fetch_part() {
  if ((parts_remote)); then
    aws_cli s3 cp --only-show-errors "$(part_location "$1")" - </dev/null
  else
    cat -- "$(part_location "$1")"
  fi
}

digest_mismatch() { # digest_mismatch INDEX GOT
  note parts "part ${part_names[$1]} digest mismatch (SHA-1 $2, the manifest says ${part_digests[$1]}): the part is corrupt, truncated or from another bundle; copy it again"
  exit 1
}

# pass_part INDEX: the part on stdout, hashed as it passes.
pass_part() {
  local i=$1 got st
  set +e
  fetch_part "${part_names[i]}" 2>"$work/fetch.err" |
    tee ${tee_keep_going[@]+"${tee_keep_going[@]}"} /dev/fd/3 2>/dev/null | sha1sum >"$work/part.sha1"
  st=("${PIPESTATUS[@]}")
  set -e
  ((st[0] == 0)) || cannot_read "$i" "$work/fetch.err"
  got=$(cut -d' ' -f1 "$work/part.sha1")
  [[ $got == "${part_digests[i]}" ]] || digest_mismatch "$i" "$got"
  ((st[1] == 0)) || exit 141 # the reader stopped: its own stage says why
}

cannot_read() { # cannot_read INDEX ERROR_FILE
  note parts "cannot read part $(part_location "${part_names[$1]}"): $(first_line "$2")"
  exit 1
}

# fetch_ahead INDEX: start fetching a part into memory.
fetch_ahead() {
  fetch_part "${part_names[$1]}" >"$work/part.$1" 2>"$work/fetch.$1.err" &
  fetchers[$1]=$!
}

# pass_fetched INDEX: wait for a part fetched ahead, verify it, then put it on stdout.
pass_fetched() {
  local i=$1 got
  wait "${fetchers[i]}" || cannot_read "$i" "$work/fetch.$i.err"
  unset 'fetchers[i]'
  got=$(sha1sum <"$work/part.$i" | cut -d' ' -f1)
  [[ $got == "${part_digests[i]}" ]] || digest_mismatch "$i" "$got"
  cat "$work/part.$i" >&3 2>/dev/null || exit 141
  rm -f "$work/part.$i" "$work/fetch.$i.err"
}

# stream_parts: the encrypted bundle on stdout, parts in manifest order, each one verified.
stream_parts() {
  exec 3>&1
  local i j pct last_pct=0 last_time=$SECONDS
  fetchers=()
  trap 'kill ${fetchers[@]+"${fetchers[@]}"} 2>/dev/null || true' EXIT
  for ((i = 0; i < part_count; i++)); do
    if ((lookahead)); then
      for ((j = i; j < part_count && j <= i + lookahead; j++)); do
        [[ -n ${fetchers[j]-} || -e $work/part.$j ]] || fetch_ahead "$j"
      done
      pass_fetched "$i"
    else
      pass_part "$i"
    fi
    pct=$(((i + 1) * 100 / part_count))
    if ((pct >= last_pct + 5 || (SECONDS - last_time >= 60 && pct > last_pct) || i + 1 == part_count)); then
      progress "parts: $((i + 1))/$part_count verified ($pct%)" >&4
      last_pct=$pct last_time=$SECONDS
    fi
  done
}

decrypt() {
  openssl enc -d -aes-128-cbc -K "$aes_key" -iv "$aes_iv" 2>"$work/openssl.err"
}

decompress() {
  gzip -dc 2>"$work/gzip.err"
}

# record_written FILE...: the bytes this stage's processes passed to write(), less what they
# wrote to FILE... (their own reports): wchar of this subshell includes its reaped children.
record_written() {
  local io=/proc/$BASHPID/io wchar own=0 f # (BASHPID here: inside $(...) it is another process)
  wchar=$(awk '$1 == "wchar:" { print $2 }' "$io" 2>/dev/null || true)
  for f in "$@"; do own=$((own + $(wc -c <"$f"))); done
  echo $((${wchar:-0} - own)) >"$work/written"
}

# untar_onto_target: GNU tar writes the image member straight onto the target, given as its
# stdout. The target is seekable, so tar seeks over the sparse member's holes (the zero runs
# the bundler recorded) instead of writing zeros. What follows the member is drained so that
# the digest covers the whole stream.
untar_onto_target() {
  "${tar_list[@]}" 1<>"$stream_target" 2>"$work/tar.err" || exit $?
  record_written "$work/tar.index" "$work/tar.err"
  cat >/dev/null
}

# --write-zeros: the member with its holes expanded to stdout, and dd writing every block.
untar_to_stdout() {
  "${tar_list[@]}" 2>"$work/tar.err" || exit $?
  cat >/dev/null
}
write_every_block() {
  dd of="$stream_target" bs=65536 iflag=fullblock conv=notrunc 2>"$work/dd.err" || exit $?
  record_written "$work/dd.err"
}

# stream_setup: how the parts are read (ahead into memory or through), and tar's command line.
stream_setup() {
  # Parts from S3 are fetched ahead into the private directory when it is in memory (tmpfs), a
  # few at a time, so that the aws CLI's start-up and S3's latency overlap the stream (hundreds
  # of parts would otherwise each wait for both), and each part is verified before any of its
  # bytes go on. Memory used: up to that many parts (10 MiB each). Elsewhere parts stream through.
  lookahead=0
  if ((parts_remote)) && [[ $(stat -f -c %T "$work" 2>/dev/null) == tmpfs ]]; then
    lookahead=${I2E_LOOKAHEAD:-3}
  fi

  # A part whose reader has gone is still hashed to its end (tee --output-error, coreutils 8.24+)
  # so that a corrupt part is named rather than the stage that choked on it.
  tee_keep_going=(--output-error=warn)
  tee "${tee_keep_going[@]}" </dev/null >/dev/null 2>&1 || tee_keep_going=()

  tar_list=(tar -xO -vv --index-file="$work/tar.index" -f - "$image_name")
}

# stream_image: the whole pipeline onto $stream_target; fails with the reason of the stage that
# broke (a stage that only lost its reader, exit 141, is named only when no other one failed).
stream_image() {
  local status i
  stream_setup
  progress "streaming $part_count part(s) from $parts_src onto $target"
  started=$SECONDS
  mkfifo "$work/tar.fifo"
  sha1sum <"$work/tar.fifo" >"$work/tar.sha1" &
  hasher_pid=$!
  exec 4>&1
  stage_names=(parts decrypt gunzip tee tar write)
  set +e
  if ((write_zeros)); then
    stream_parts | decrypt | decompress | tee "$work/tar.fifo" 2>"$work/tee.err" | untar_to_stdout | write_every_block
  else
    stream_parts | decrypt | decompress | tee "$work/tar.fifo" 2>"$work/tee.err" | untar_onto_target
  fi
  status=("${PIPESTATUS[@]}")
  set -e
  wait "$hasher_pid" || true
  hasher_pid=''

  stage_texts=(
    "reading the parts failed"
    "decryption failed ($(first_line "$work/openssl.err")): the parts do not form the complete encrypted bundle"
    "gunzip failed ($(first_line "$work/gzip.err")): the decrypted bundle is not a complete gzip stream"
    "the tar stream could not be hashed ($(first_line "$work/tee.err"))"
    "tar could not extract '$image_name' onto $target ($(first_line "$work/tar.err"))"
    "writing to $target failed ($(first_line "$work/dd.err"))"
  )
  [[ ! -s $work/reason.parts ]] || fail "$(<"$work/reason.parts")"
  for i in "${!status[@]}"; do
    if ((status[i] != 0 && status[i] != 141)); then
      fail "${stage_texts[i]}"
    fi
  done
  for i in "${!status[@]}"; do
    ((status[i] == 0)) || fail "the ${stage_names[i]} stage was interrupted (exit ${status[i]})"
  done
  [[ -s $work/tar.index ]] || fail "tar found no '$image_name' in the bundle: the manifest does not belong to these parts"
  sync "$stream_target" 2>/dev/null || sync
  if ((to_hvm)); then
    losetup -d "$hvm_loop" 2>/dev/null || progress "warning: could not detach $hvm_loop"
    loops=()
  fi
}

# check_image: the tar stream's digest and the image's size, against the manifest; the results.
check_image() {
  local actual elapsed
  stream_digest=$(cut -d' ' -f1 "$work/tar.sha1")
  [[ $stream_digest == "$image_digest" ]] ||
    fail "the decrypted tar stream's SHA-1 $stream_digest differs from the manifest's image digest $image_digest: the bundle is corrupt; bundle the image again"
  # The member's size as tar lists it ("-rw-r--r-- 0/0 SIZE DATE TIME NAME"; sparse: real size).
  image_bytes=$(awk 'NR == 1 { print $3 }' "$work/tar.index")
  [[ $image_bytes =~ ^[0-9]+$ ]] || fail "cannot read the image size from tar's listing ($(head -c 200 "$work/tar.index"))"
  ((image_bytes == image_size)) ||
    fail "the manifest's image size $image_size differs from the image in the bundle ($image_bytes bytes): the manifest does not belong to these parts"
  if ((!target_is_device)); then
    actual=$(stat -c %s "$target")
    ((actual == image_size + to_hvm * hvm_partition_offset)) || fail "target file $target is $actual bytes after writing, expected $((image_size + to_hvm * hvm_partition_offset))"
  fi
  bytes_written=$(<"$work/written")
  elapsed=$((SECONDS - started))
  result image_bytes "$image_bytes"
  result bytes_written "$bytes_written"
  result digest ok
  progress "image rebuilt: $((image_bytes / 1048576)) MiB, of which $((bytes_written / 1048576)) MiB written (the rest: holes left unwritten), in ${elapsed}s"
}
