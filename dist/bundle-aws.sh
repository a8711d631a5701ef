#!/usr/bin/env bash
# bundle-aws.sh: what bundle.sh asks of AWS from the source instance, sourced by it, never run:
# instance metadata (IMDSv2) and the instance profile's credentials, the certificate and key from
# SSM (ssm-get-parameter.rb) into a private folder, and ec2-upload-bundle with those credentials
# given only through its environment. Runs on source instances: bash 4.2 and later.
# shellcheck shell=bash disable=SC2154,SC2034 # the settings, WORK, EXIT_*: set by bundle.sh and bundle-checks.sh; INHERIT_FLAGS: read by bundle.sh

# --- instance metadata (IMDSv2) ---------------------------------------------------------------

imds_token() {
  curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' --connect-timeout 2 --max-time 10 \
    "$IMDS/latest/api/token" </dev/null
}

# The token goes to curl through its config on stdin, not through its arguments. The pipe cannot
# lose it: curl "reads the entire config file first, then performs" (Daniel Stenberg, curl-users,
# 2015-12), so the printf always finds its reader; a stand-in curl must read it too (imds-curl.test.ts).
# One try, 2 s to connect and 10 s in all, is already more patient than the AWS SDKs and CLI:
# AWS_METADATA_SERVICE_NUM_ATTEMPTS, "Default value: 1", and AWS_METADATA_SERVICE_TIMEOUT, "Specifies
# the number of seconds before timing out ... Default value: 1" (AWS SDKs and Tools Reference Guide,
# "Amazon EC2 instance metadata").
imds_get() {
  printf 'header = "X-aws-ec2-metadata-token: %s"\n' "$IMDS_TOKEN" |
    curl -sf --connect-timeout 2 --max-time 10 --config - "$IMDS/latest/$1"
}

check_instance_profile() {
  IMDS_TOKEN=$(imds_token) || fail "the instance metadata service (IMDSv2) did not answer" "$EXIT_KEYS"
  INSTANCE_ROLE=$(imds_get meta-data/iam/security-credentials/ | head -n 1) || INSTANCE_ROLE=
  [[ -n $INSTANCE_ROLE ]] ||
    fail "the instance has no instance profile: ec2-upload-bundle needs its credentials to write to s3://$BUCKET" "$EXIT_KEYS"
}

# ec2-bundle-vol copies kernel, ramdisk, product codes and mappings from the metadata with
# IMDSv1 and stops when that is refused; registration sets them anyway.
choose_inherit() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --connect-timeout 2 --max-time 10 "$IMDS/latest/meta-data/" </dev/null) || code=000
  if [[ $code == 200 ]]; then
    INHERIT_FLAGS=()
    result inherit_metadata yes
  else
    progress "the instance refuses IMDSv1 (HTTP $code): bundling with --no-inherit"
    INHERIT_FLAGS=(--no-inherit)
    result inherit_metadata no
  fi
}

json_string() {
  local pattern="\"$1\"[[:space:]]*:[[:space:]]*\"([^\"]*)\""
  [[ $2 =~ $pattern ]] && printf '%s' "${BASH_REMATCH[1]}"
}

# --- key material -----------------------------------------------------------------------------

make_work_dir() {
  local base
  for base in "$I2E_ROOT/dev/shm" "$I2E_ROOT/tmp"; do
    if [[ -d $base && -w $base ]] && WORK=$(mktemp -d "$base/i2e-keys.XXXXXX"); then
      journal_add "dir $WORK"
      chmod 700 "$WORK"
      return 0
    fi
  done
  fail "could not create a private folder for the key material in /dev/shm or /tmp"
}

# Reads the instance profile's current credentials into CRED_KEY/SECRET/TOKEN, every time: EC2
# rotates them ("new credentials at least five minutes before the expiration of the old").
read_credentials() {
  local json
  json=$(imds_get "meta-data/iam/security-credentials/$INSTANCE_ROLE") ||
    fail "could not read the credentials of the instance profile $INSTANCE_ROLE from IMDSv2" "$EXIT_KEYS"
  CRED_KEY=$(json_string AccessKeyId "$json") || CRED_KEY=
  CRED_SECRET=$(json_string SecretAccessKey "$json") || CRED_SECRET=
  CRED_TOKEN=$(json_string Token "$json") || CRED_TOKEN=
  [[ -n $CRED_KEY && -n $CRED_SECRET ]] || fail "the instance profile $INSTANCE_ROLE returned no usable credentials" "$EXIT_KEYS"
}

forget_credentials() { CRED_KEY='' CRED_SECRET='' CRED_TOKEN=''; }

# The parameter through ssm-get-parameter.rb (no AWS CLI on old sources), credentials in its
# environment only.
fetch_parameter() {
  local name=$1 file=$2
  read_credentials
  if ! (umask 077 && AWS_ACCESS_KEY_ID=$CRED_KEY AWS_SECRET_ACCESS_KEY=$CRED_SECRET AWS_SESSION_TOKEN=$CRED_TOKEN \
    ruby "$SCRIPT_DIR/ssm-get-parameter.rb" "$REGION" "$name" >"$file" 2>"$WORK/ssm.err" </dev/null); then
    forget_credentials
    fail "could not read the SecureString parameter $name: $(error_line "$WORK/ssm.err")" "$EXIT_KEYS"
  fi
  forget_credentials
  grep -q -- '-----BEGIN' "$file" || fail "the parameter $name does not hold PEM text" "$EXIT_KEYS"
}

# --- credentials for ec2-upload-bundle --------------------------------------------------------

# Ruby preloaded into ec2-upload-bundle (RUBYOPT=-rFILE): when no -a is given the tool calls
# S3ToolParameters#get_creds_from_instance_profile; once that class is loaded, the method first
# takes the credentials from the environment. Written for Ruby 1.8.7 and later.
write_credentials_shim() {
  cat >"$1" <<'RUBY'
module I2eCredentialsFromEnvironment
  def self.install
    return if @installed || !defined?(::S3ToolParameters)
    return unless ::S3ToolParameters.method_defined?(:get_creds_from_instance_profile)
    @installed = true
    ::S3ToolParameters.class_eval do
      alias_method :i2e_imdsv1_credentials, :get_creds_from_instance_profile
      def get_creds_from_instance_profile
        key = ENV['AWS_ACCESS_KEY_ID'].to_s
        secret = ENV['AWS_SECRET_ACCESS_KEY'].to_s
        return i2e_imdsv1_credentials if key.empty? || secret.empty?
        token = ENV['AWS_SESSION_TOKEN'].to_s
        @user = { 'aws_access_key_id' => key, 'aws_secret_access_key' => secret,
                  'aws_delegation_token' => (token.empty? ? nil : token) }
        @pass = secret
      end
    end
    $stderr.puts 'Using the instance-profile credentials passed in the environment.'
  end
end

module Kernel
  alias_method :i2e_require_without_credentials, :require
  def require(name)
    loaded = i2e_require_without_credentials(name)
    I2eCredentialsFromEnvironment.install
    loaded
  end
  private :require
end
RUBY
}

# ec2-upload-bundle gets no endpoint from "--region" alone for regions missing from its map.
s3_url_flags() {
  [[ $AMI_TOOLS_REGIONS == *" $REGION "* ]] && return 0
  local suffix=amazonaws.com
  [[ $REGION == cn-* ]] && suffix=amazonaws.com.cn
  printf '%s\n' --url "https://s3.$REGION.$suffix"
}

upload_bundle() {
  local manifest=$1 location=$2 shim="$WORK/credentials-from-env.rb" attempt rc=0
  local -a url=()
  mapfile -t url < <(s3_url_flags)
  write_credentials_shim "$shim"
  progress "uploading to s3://$location"
  for ((attempt = 1; attempt <= UPLOAD_ATTEMPTS; attempt++)); do
    read_credentials
    rc=0
    AWS_ACCESS_KEY_ID=$CRED_KEY AWS_SECRET_ACCESS_KEY=$CRED_SECRET AWS_SESSION_TOKEN=$CRED_TOKEN RUBYOPT="-r$shim${RUBYOPT:+ $RUBYOPT}" \
      run_tool ec2-upload-bundle ec2-upload-bundle -b "$location" -m "$manifest" --region "$REGION" \
      ${url[@]+"${url[@]}"} --retry --batch || rc=$?
    forget_credentials
    ((rc != 0)) || break
    # only a refusal for expired credentials is worth another try with fresh ones
    grep -qiE 'ExpiredToken|token has expired|RequestExpired|security token included in the request is expired' \
      "$WORK/ec2-upload-bundle.log" || break
    ((attempt < UPLOAD_ATTEMPTS)) && progress "the credentials expired during the upload: reading fresh ones and uploading again ($((attempt + 1)) of $UPLOAD_ATTEMPTS)"
  done
  if ((rc != 0)); then
    local extra=
    ((rc == 3)) && extra=" (the bucket may not exist, or exist and be owned by somebody else)"
    fail "ec2-upload-bundle failed (exit $rc)$extra: $(error_line "$WORK/ec2-upload-bundle.log")" "$EXIT_UPLOAD"
  fi
}

