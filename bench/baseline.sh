#!/usr/bin/env bash
# baseline.sh BUNDLE_DIR KEY SCRATCH TARGET: the manual procedure of the AWS documentation,
# three passes over the disk, as the benchmark's reference:
#   1. ec2-download-bundle: the manifest and every part copied to a scratch folder;
#   2. ec2-unbundle: cat parts | openssl enc -d | gunzip | tar -x, digest checked, the image
#      written as a (sparse) file in the scratch folder;
#   3. dd if=image of=TARGET bs=1M conv=fsync.
set -euo pipefail

bundle=$1 key=$2 scratch=$3 target=$4
field() { grep -o "<$1[^>]*>[^<]*</$1>" "$scratch/image.manifest.xml" | head -n 1 | sed 's/<[^>]*>//g'; }
image_name() { grep -o "<image><name>[^<]*" "$scratch/image.manifest.xml" | sed "s/.*>//"; }
user_field() { field "$1" | xxd -r -p | openssl pkeyutl -decrypt -inkey "$key"; }

# 1. download
mkdir -p "$scratch"
cp "$bundle/image.manifest.xml" "$scratch/"
mapfile -t parts < <(grep -o '<filename>[^<]*</filename>' "$scratch/image.manifest.xml" | sed 's/<[^>]*>//g')
for part in "${parts[@]}"; do cp "$bundle/$part" "$scratch/"; done

# 2. unbundle
mkfifo "$scratch/tar.fifo"
sha1sum <"$scratch/tar.fifo" >"$scratch/digest" &
hasher=$!
(
  cd "$scratch"
  cat "${parts[@]}" |
    openssl enc -d -aes-128-cbc -K "$(user_field user_encrypted_key)" -iv "$(user_field user_encrypted_iv)" |
    gzip -dc | tee tar.fifo | tar -xf - "$(image_name)"
)
wait "$hasher"
[[ $(cut -d' ' -f1 "$scratch/digest") == "$(field digest)" ]] || {
  echo "baseline: digest mismatch" >&2
  exit 1
}

# 3. copy to the target
dd if="$scratch/$(image_name)" of="$target" bs=1M conv=fsync status=none
