#!/usr/bin/env bash
# convert-manifest.sh: the bundle as convert.sh reads it before streaming, sourced by it, never
# run. The manifest (ec2-ami-tools version 2007-10-10) is read and parsed with bash's own regular
# expressions (no XML tool on minimal helpers); the private key must decrypt its AES key and IV
# and its signature must verify against the key's public half; every part it lists must be there,
# and their sizes must add up to its bundled_size.
#
#   read_manifest      the manifest into $work; parts_src (the --parts folder, or the manifest's)
#   parse_manifest     image_name, image_size, bundled_size, image_digest, the encrypted key and
#                      IV, the signature, and the signed XML (machine_xml, image_xml)
#   parse_parts        part_count, part_names, part_digests, in manifest order
#   verify_manifest    aes_key, aes_iv; the signature checked
#   check_parts        parts_remote; every part present, the sizes adding up
# shellcheck shell=bash disable=SC2154,SC2034 # work, key_file, manifest_arg, parts_arg: set by convert.sh; what this file sets, the others read

# read_manifest: the manifest from S3 or a file, copied into the private directory.
read_manifest() {
  local default_parts
  manifest_file=$work/manifest.xml
  if [[ $manifest_arg == s3://* ]]; then
    aws_cli s3 cp --only-show-errors "$manifest_arg" "$manifest_file" </dev/null >"$work/s3.err" 2>&1 ||
      fail "cannot read the manifest $manifest_arg: $(first_line "$work/s3.err")"
    default_parts=${manifest_arg%/*}/
  else
    [[ -f $manifest_arg && -r $manifest_arg ]] || fail "manifest file '$manifest_arg' does not exist or is not readable"
    cp "$manifest_arg" "$manifest_file"
    default_parts=$(dirname "$manifest_arg")
  fi
  parts_src=${parts_arg:-$default_parts}
}

manifest_bad() {
  fail "manifest $manifest_arg is unreadable or truncated: $1; download it again (it must be the image.manifest.xml that ec2-bundle-vol or ec2-bundle-image wrote)"
}

# field TEXT TAG: the text of the first <TAG> or <TAG attr...> element (without children) in TEXT.
field() {
  local re="<$2([[:space:]][^>]*)?>([^<]*)</$2>"
  [[ $1 =~ $re ]] || manifest_bad "no <$2>"
  printf '%s' "${BASH_REMATCH[2]}"
}

# parse_manifest: the manifest's structure and the image's fields, each checked for its form.
parse_manifest() {
  local re_end re_version re_machine re_image re_parts image_inner
  manifest_xml=$(<"$manifest_file")
  re_end='</manifest>[[:space:]]*$'
  [[ $manifest_xml =~ $re_end ]] || manifest_bad "it does not end with </manifest>"
  re_version='<version>([^<]*)</version>'
  [[ $manifest_xml =~ $re_version ]] || manifest_bad "no <version>"
  [[ ${BASH_REMATCH[1]} == 2007-10-10 ]] ||
    fail "manifest $manifest_arg has version '${BASH_REMATCH[1]}'; only version 2007-10-10 (ec2-ami-tools 1.3 and later) is supported: bundle the image again with current AMI tools"
  re_machine='(<machine_configuration>.*</machine_configuration>)'
  [[ $manifest_xml =~ $re_machine ]] || manifest_bad "no <machine_configuration>"
  machine_xml=${BASH_REMATCH[1]}
  re_image='(<image>(.*)</image>)'
  [[ $manifest_xml =~ $re_image ]] || manifest_bad "no <image> element"
  image_xml=${BASH_REMATCH[1]}
  image_inner=${BASH_REMATCH[2]}
  re_parts="(<parts[[:space:]]+count=['\"]([0-9]+)['\"][[:space:]]*>(.*)</parts>)"
  [[ $image_inner =~ $re_parts ]] || manifest_bad "no <parts> list"
  part_count=$((10#${BASH_REMATCH[2]}))
  parts_xml=${BASH_REMATCH[3]}
  image_fields=${image_inner/"${BASH_REMATCH[1]}"/}
  image_name=$(field "$image_fields" name)
  image_size=$(field "$image_fields" size)
  bundled_size=$(field "$image_fields" bundled_size)
  image_digest=$(field "$image_fields" digest)
  user_key_hex=$(field "$image_fields" user_encrypted_key)
  user_iv_hex=$(field "$image_fields" user_encrypted_iv)
  signature_hex=$(field "$manifest_xml" signature)

  safe_name='^[A-Za-z0-9_][A-Za-z0-9._+-]*$'
  [[ $image_name =~ $safe_name ]] || manifest_bad "image name '$image_name' is not a plain file name"
  [[ $image_size =~ ^[0-9]{1,19}$ && $image_size -gt 0 ]] || manifest_bad "image size '$image_size' is not a positive number"
  [[ $bundled_size =~ ^[0-9]{1,19}$ ]] || manifest_bad "bundled_size '$bundled_size' is not a number"
  [[ ${image_digest,,} =~ ^[0-9a-f]{40}$ ]] || manifest_bad "image digest is not a SHA-1"
  image_digest=${image_digest,,}
  [[ $user_key_hex =~ ^([0-9a-fA-F]{2})+$ && $user_iv_hex =~ ^([0-9a-fA-F]{2})+$ ]] ||
    manifest_bad "user_encrypted_key or user_encrypted_iv is not hex"
  ((part_count > 0)) || manifest_bad "it lists no parts"
}

# parse_parts: the <part> list; indexes are checked (each once, below the count).
parse_parts() {
  local re_part_index re_part_file re_part_digest rest one index
  part_names=() part_digests=()
  re_part_index="<part[[:space:]]+index=['\"]([0-9]+)['\"]"
  re_part_file='<filename>([^<]*)</filename>'
  re_part_digest='<digest[^>]*>([0-9a-fA-F]{40})</digest>'
  rest=$parts_xml
  while [[ $rest == *"</part>"* ]]; do
    one=${rest%%"</part>"*}
    rest=${rest#*"</part>"}
    [[ $one =~ $re_part_index ]] || manifest_bad "a <part> without an index"
    index=$((10#${BASH_REMATCH[1]}))
    ((index < part_count)) || manifest_bad "part index $index is not below the part count $part_count"
    [[ -z ${part_names[index]-} ]] || manifest_bad "part index $index is listed twice"
    [[ $one =~ $re_part_file ]] || manifest_bad "part $index has no file name"
    part_names[index]=${BASH_REMATCH[1]}
    [[ ${part_names[index]} =~ $safe_name ]] || manifest_bad "part $index's file name is not a plain file name"
    [[ $one =~ $re_part_digest ]] || manifest_bad "part $index has no SHA-1 digest"
    part_digests[index]=${BASH_REMATCH[1],,}
  done
  ((${#part_names[@]} == part_count)) || manifest_bad "it lists ${#part_names[@]} parts but says count='$part_count'"
  progress "manifest: image '$image_name', $image_size bytes, $part_count part(s), $bundled_size bytes bundled"
}

# decrypt_user_field HEX OUT: RSA PKCS#1 v1.5 decryption with the private key; the result must
# be the 32 hex characters of a 16-byte AES key or IV, or the key is not the bundle's.
decrypt_user_field() {
  if ! hex_to_bin <<<"$1" | openssl pkeyutl -decrypt -inkey "$key_file" -passin pass: -out "$2" 2>/dev/null ||
    ! LC_ALL=C grep -qxE '[0-9a-fA-F]{32}' "$2" || (($(wc -c <"$2") != 32)); then
    fail "wrong private key: it does not decrypt the manifest's user_encrypted_key/iv; give the private key whose certificate was used to bundle this image (ec2-bundle-vol -c/-k)"
  fi
}

# verify_manifest: the AES key and IV decrypted; the signature of machine_configuration and image.
verify_manifest() {
  decrypt_user_field "$user_key_hex" "$work/aes.key"
  decrypt_user_field "$user_iv_hex" "$work/aes.iv"
  aes_key=$(<"$work/aes.key")
  aes_iv=$(<"$work/aes.iv")

  openssl pkey -in "$key_file" -passin pass: -pubout -out "$work/public.pem" </dev/null 2>/dev/null ||
    fail "cannot derive the public key from the private key"
  [[ $signature_hex =~ ^[0-9a-fA-F]+$ ]] || manifest_bad "the signature is not hex"
  hex_to_bin <<<"$signature_hex" >"$work/signature.bin"
  printf '%s%s' "$machine_xml" "$image_xml" |
    openssl dgst -sha1 -verify "$work/public.pem" -signature "$work/signature.bin" >/dev/null 2>&1 ||
    fail "manifest signature mismatch: $manifest_arg was changed after it was signed, or belongs to another key; use the manifest exactly as the bundler wrote it"
  progress "key and IV decrypted, manifest signature verified"
}

part_location() { # part_location NAME
  if ((parts_remote)); then printf '%s%s' "$parts_src" "$1"; else printf '%s/%s' "${parts_src%/}" "$1"; fi
}

# check_parts: where the parts are, and are they all there. Sizes known before streaming point at
# a truncated or missing part by name. Parts are all the same size except the last one, and add up
# to bundled_size.
check_parts() {
  local i f size name total short part_sizes=()
  parts_remote=0
  if [[ $parts_src == s3://* ]]; then
    parts_remote=1
    parts_src=${parts_src%/}/
  else
    [[ -d $parts_src ]] || fail "parts folder '$parts_src' does not exist"
  fi

  if ((parts_remote)); then
    if aws_cli s3 ls "$parts_src" </dev/null >"$work/listing" 2>"$work/s3.err"; then
      declare -A listed=()
      while read -r _ _ size name; do
        [[ -n ${name-} ]] && listed[$name]=$size
      done <"$work/listing"
      for ((i = 0; i < part_count; i++)); do
        [[ -n ${listed[${part_names[i]}]-} ]] ||
          fail "missing part $(part_location "${part_names[i]}"): upload the complete bundle again (ec2-upload-bundle)"
        part_sizes[i]=${listed[${part_names[i]}]}
      done
    else
      progress "note: cannot list $parts_src ($(first_line "$work/s3.err")); parts are checked by digest only"
    fi
  else
    for ((i = 0; i < part_count; i++)); do
      f=$(part_location "${part_names[i]}")
      [[ -f $f && -r $f ]] || fail "missing part file $f: copy the complete bundle (all $part_count parts listed in the manifest)"
      part_sizes[i]=$(stat -Lc %s "$f")
    done
  fi
  if ((${#part_sizes[@]} == part_count)); then
    total=0
    for ((i = 0; i < part_count; i++)); do total=$((total + part_sizes[i])); done
    if ((total != bundled_size)); then
      short=$((part_count - 1))
      for ((i = 1; i < part_count - 1; i++)); do
        ((part_sizes[i] == part_sizes[0])) || short=$i
      done
      fail "part ${part_names[short]} is truncated or has the wrong size: the parts add up to $total bytes, the manifest's bundled_size is $bundled_size; copy that part again"
    fi
  fi
}
