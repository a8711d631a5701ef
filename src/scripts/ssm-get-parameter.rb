# Reads one SSM parameter with decryption and prints its value: one signed GetParameter call,
# without the AWS CLI. Sources running Ubuntu 12.04/14.04 cannot install a current CLI (v1 1.39
# and later need Python 3.9; the last for Python 2.7/3.4 is 1.18), but they have the Ruby with
# openssl that the AMI tools need. Run by bundle.sh:
#
#   ruby ssm-get-parameter.rb REGION NAME > FILE
#
# Credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN in the
# environment (bundle.sh reads the instance profile's through IMDSv2); never from arguments.
# Errors go to stderr as the CLI words them ("An error occurred (Code) when calling the
# GetParameter operation: message"), exit 1.
#
# Written for Ruby 1.8.7 (Ubuntu 12.04) to 3.x: no JSON library (not in 1.8.7's standard
# library), no 1.9 hash syntax, no lambdas with ->, OpenSSL::Digest::SHA256 (present since 1.8).
#
# The request is Signature Version 4 as the AWS General Reference describes it ("Create a
# canonical request", "Create a string to sign", "Calculate the signature"); the tests compare
# it with the AWS SDK's own signer. I2E_SSM_ENDPOINT and I2E_SIGV4_DATE exist for the tests.
require 'openssl'
require 'net/http'
require 'net/https'
require 'uri'

module I2eSsmGetParameter
  SERVICE = 'ssm'
  TARGET = 'AmazonSSM.GetParameter'
  CONTENT_TYPE = 'application/x-amz-json-1.1'

  def self.hex(bytes)
    bytes.unpack('H*')[0]
  end

  def self.sha256_hex(data)
    OpenSSL::Digest::SHA256.hexdigest(data)
  end

  def self.hmac(key, data)
    OpenSSL::HMAC.digest(OpenSSL::Digest::SHA256.new, key, data)
  end

  # The headers of a signed POST of BODY to HOST (as sent in the Host header), AMZ_DATE being
  # the time as YYYYMMDDTHHMMSSZ.
  def self.signed_headers(host, region, body, amz_date, key, secret, token)
    headers = {
      'content-type' => CONTENT_TYPE,
      'host' => host,
      'x-amz-date' => amz_date,
      'x-amz-target' => TARGET
    }
    headers['x-amz-security-token'] = token if token && !token.empty?
    names = headers.keys.sort
    canonical = ['POST', '/', '',
                 names.map { |n| "#{n}:#{headers[n].to_s.strip}\n" }.join,
                 names.join(';'), sha256_hex(body)].join("\n")
    day = amz_date[0, 8]
    scope = "#{day}/#{region}/#{SERVICE}/aws4_request"
    to_sign = ['AWS4-HMAC-SHA256', amz_date, scope, sha256_hex(canonical)].join("\n")
    k = hmac(hmac(hmac(hmac('AWS4' + secret, day), region), SERVICE), 'aws4_request')
    headers['authorization'] = "AWS4-HMAC-SHA256 Credential=#{key}/#{scope}, " \
      "SignedHeaders=#{names.join(';')}, Signature=#{hex(hmac(k, to_sign))}"
    headers
  end

  # The string value of "FIELD" in a JSON text (no nesting needed), unescaped.
  def self.json_string(text, field)
    m = text.match(/"#{Regexp.escape(field)}"\s*:\s*"((?:[^"\\]|\\.)*)"/m)
    return nil unless m
    m[1].gsub(/\\(u[0-9a-fA-F]{4}|.)/m) do
      c = $1
      case c
      when 'n' then "\n"
      when 't' then "\t"
      when 'r' then "\r"
      when 'b' then "\b"
      when 'f' then "\f"
      else c.length == 5 ? [c[1, 4].hex].pack('U') : c
      end
    end
  end

  def self.endpoint(region)
    override = ENV['I2E_SSM_ENDPOINT'].to_s
    return override unless override.empty?
    suffix = region =~ /\Acn-/ ? 'amazonaws.com.cn' : 'amazonaws.com'
    "https://ssm.#{region}.#{suffix}"
  end

  def self.fail(message)
    $stderr.puts message
    exit 1
  end

  def self.main(args)
    region, name = args
    fail('usage: ruby ssm-get-parameter.rb REGION NAME') unless args.length == 2
    fail("not a region: #{region}") unless region =~ /\A[a-z]{2}(-[a-z]+)+-\d+\z/
    # Parameter names: "a-z, A-Z, 0-9, and _.-/" (SSM API reference, PutParameter Name); a name
    # so limited needs no escaping in the JSON body.
    fail("not a parameter name: #{name}") unless name =~ %r{\A[A-Za-z0-9_./-]{1,2048}\z}
    key = ENV['AWS_ACCESS_KEY_ID'].to_s
    secret = ENV['AWS_SECRET_ACCESS_KEY'].to_s
    fail('no credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are empty') if key.empty? || secret.empty?
    uri = URI.parse(endpoint(region))
    host = uri.host
    host += ":#{uri.port}" unless uri.port == uri.default_port
    amz_date = ENV['I2E_SIGV4_DATE'].to_s
    amz_date = Time.now.utc.strftime('%Y%m%dT%H%M%SZ') if amz_date.empty?
    body = "{\"Name\":\"#{name}\",\"WithDecryption\":true}"
    headers = signed_headers(host, region, body, amz_date, key, secret, ENV['AWS_SESSION_TOKEN'].to_s)

    http = Net::HTTP.new(uri.host, uri.port)
    http.open_timeout = 10
    http.read_timeout = 30
    if uri.scheme == 'https'
      http.use_ssl = true
      http.verify_mode = OpenSSL::SSL::VERIFY_PEER
      # Ruby 1.8.7 verifies nothing unless told where the CAs are
      ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt'].each do |f|
        if File.file?(f)
          http.ca_file = f
          break
        end
      end
    end
    request = Net::HTTP::Post.new('/')
    headers.each { |n, v| request[n] = v }
    request.body = body
    begin
      response = http.request(request)
    rescue Exception => e
      fail("could not reach #{uri}: #{e.class}: #{e.message}")
    end
    text = response.body.to_s
    unless response.code == '200'
      code = json_string(text, '__type').to_s.split('#').last || "HTTP #{response.code}"
      message = json_string(text, 'message') || json_string(text, 'Message') || text[0, 200]
      fail("An error occurred (#{code}) when calling the GetParameter operation: #{message}")
    end
    value = json_string(text, 'Value')
    fail("the GetParameter answer holds no Value: #{text[0, 200]}") unless value
    $stdout.write(value)
    $stdout.write("\n") unless value[-1, 1] == "\n"
  end
end

I2eSsmGetParameter.main(ARGV) if $0 == __FILE__
