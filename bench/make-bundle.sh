#!/usr/bin/env bash
# make-bundle.sh DIR [IMAGE_MIB [IMAGE_FILE]]: a throwaway RSA key and certificate, a sparse
# disk image of IMAGE_MIB MiB (default 1024) with about a fifth of it random data in a few
# chunks (or a copy of IMAGE_FILE, kept sparse, when given; tests bundle their own disks), and a
# bundle of that image in the format ec2-bundle-image writes (see
# fixtures/bundles/README.md): GNU tar with old-style sparse members | SHA-1 of the
# tar stream | gzip -9 | AES-128-CBC, split into 10 MiB parts, and a version 2007-10-10
# manifest signed with the key. Writes into DIR: bundle/ (image.manifest.xml, image.part.N,
# key.pem, cert.pem) and facts.env (image size, non-zero bytes, SHA-256 of the image).
# The image itself is deleted once bundled.
set -euo pipefail

dir=$1
image_mib=${2:-1024}
mib=1048576
mkdir -p "$dir/src" "$dir/bundle"
bundle=$dir/bundle
img=$dir/src/image

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj /CN=i2e-bench \
  -keyout "$bundle/key.pem" -out "$bundle/cert.pem" 2>/dev/null
# Stands in for the EC2 certificate that ec2-bundle-image also encrypts the key to.
openssl req -x509 -newkey rsa:1024 -nodes -sha256 -days 2 -subj /CN=i2e-bench-ec2 \
  -keyout "$dir/ec2-key.pem" -out "$dir/ec2-cert.pem" 2>/dev/null

if [[ -n ${3-} ]]; then
  cp --sparse=always "$3" "$img"
  nonzero=$(($(stat -c %b "$img") * $(stat -c %B "$img"))) # allocated: an upper bound
else
  # The image: zeros, with random chunks at a few places (offsets not all block-aligned).
  truncate -s "${image_mib}M" "$img"
  data_mib=$((image_mib * 200 / 1024))
  nonzero=0
  # offset (per mille of the image, plus bytes) and length (per mille of the data)
  for chunk in "0:1048576:5" "62:12288:295" "293:777:300" "586:0:250" "920:4095:150"; do
    IFS=: read -r at plus share <<<"$chunk"
    offset=$((image_mib * mib * at / 1000 + plus))
    length=$((data_mib * mib * share / 1000))
    head -c "$length" /dev/urandom | dd of="$img" bs=1M iflag=fullblock oflag=seek_bytes seek="$offset" \
      conv=notrunc status=none
    nonzero=$((nonzero + length))
  done
fi
image_size=$(stat -c %s "$img")
image_sha256=$(sha256sum "$img" | cut -d' ' -f1)

key=$(openssl rand -hex 16)
iv=$(openssl rand -hex 16)
mkfifo "$dir/tar.fifo"
sha1sum <"$dir/tar.fifo" >"$dir/tar.sha1" &
hasher=$!
tar --sparse --format=gnu --owner=0 --group=0 --numeric-owner -C "$dir/src" -cf - image |
  tee "$dir/tar.fifo" | gzip -9 | openssl enc -e -aes-128-cbc -K "$key" -iv "$iv" |
  split -b 10485760 -d -a 6 - "$dir/raw."
wait "$hasher"
rm -f "$img" "$dir/tar.fifo"

raw=("$dir"/raw.*)
count=${#raw[@]}
width=${#count}
hex() { od -An -v -tx1 | tr -d ' \n'; }
encrypt_to() { printf '%s' "$2" | openssl pkeyutl -encrypt -certin -inkey "$1" | hex; }

parts_xml='' bundled=0
for ((i = 0; i < count; i++)); do
  name=$(printf "image.part.%0${width}d" "$i")
  mv "${raw[i]}" "$bundle/$name"
  digest=$(sha1sum "$bundle/$name" | cut -d' ' -f1)
  bundled=$((bundled + $(stat -c %s "$bundle/$name")))
  parts_xml+="<part index='$i'><filename>$name</filename><digest algorithm='SHA1'>$digest</digest></part>"
done

machine="<machine_configuration><architecture>x86_64</architecture></machine_configuration>"
image="<image><name>image</name><user>123456789012</user><type>machine</type>"
image+="<digest algorithm='SHA1'>$(cut -d' ' -f1 "$dir/tar.sha1")</digest>"
image+="<size>$image_size</size><bundled_size>$bundled</bundled_size>"
image+="<ec2_encrypted_key algorithm='AES-128-CBC'>$(encrypt_to "$dir/ec2-cert.pem" "$key")</ec2_encrypted_key>"
image+="<user_encrypted_key algorithm='AES-128-CBC'>$(encrypt_to "$bundle/cert.pem" "$key")</user_encrypted_key>"
image+="<ec2_encrypted_iv>$(encrypt_to "$dir/ec2-cert.pem" "$iv")</ec2_encrypted_iv>"
image+="<user_encrypted_iv>$(encrypt_to "$bundle/cert.pem" "$iv")</user_encrypted_iv>"
image+="<parts count='$count'>$parts_xml</parts></image>"
signature=$(printf '%s%s' "$machine" "$image" | openssl dgst -sha1 -sign "$bundle/key.pem" | hex)
printf '%s' "<?xml version='1.0'?><manifest><version>2007-10-10</version><bundler><name>ec2-ami-tools</name><version>1.5</version><release>3</release></bundler>$machine$image<signature>$signature</signature></manifest>" \
  >"$bundle/image.manifest.xml"
rm -f "$dir/ec2-key.pem" "$dir/ec2-cert.pem" "$dir/tar.sha1"
rmdir "$dir/src"

cat >"$dir/facts.env" <<EOF
image_bytes=$image_size
nonzero_bytes=$nonzero
image_sha256=$image_sha256
parts=$count
bundled_bytes=$bundled
EOF
