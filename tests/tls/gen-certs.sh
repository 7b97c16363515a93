#!/bin/sh
# gen-certs.sh OUTDIR [--rsa] - the TLS test certificates, made fresh at
# test time with the `openssl` command (no key is ever committed).
#
# Every key is EC P-256 (fast to make, accepted by every peer); --rsa adds
# an RSA 2048 server certificate, for the benchmark. Subjects are written
# O first, CN last, so RFC 2253 order prints "CN=...,O=weft test".
#
#   ca.pem ca.key               "weft test CA", the trusted root
#   server.pem server.key       CN=localhost, SAN DNS:localhost,
#                               IP:127.0.0.1, IP:::1 (signed by ca)
#   server-enc.key              server.key encrypted, passphrase
#                               "weft-pass"
#   server-rsa.pem server-rsa.key   as server.pem, RSA 2048 (--rsa only)
#   inter.pem                   an intermediate CA (signed by ca)
#   leaf-inter.pem leaf-inter.key   localhost, signed by inter
#   leaf-inter-chain.pem        leaf-inter.pem then inter.pem
#   client.pem client.key       CN=weft client, clientAuth (signed by ca)
#   expired.pem expired.key     localhost, valid 2020-01-01..2020-01-02
#   future.pem future.key       localhost, valid from 2099
#   wronghost.pem wronghost.key CN/SAN wrong.example (signed by ca)
#   selfsigned.pem selfsigned.key   localhost, self-signed
#   other-ca.pem other-ca.key   an untrusted root, "weft other CA"
#   untrusted.pem untrusted.key localhost, signed by other-ca
#   untrusted-chain.pem         untrusted.pem then other-ca.pem
#   client-untrusted.pem/.key   a client cert signed by other-ca
#   client-expired.pem/.key     a client cert signed by ca, expired
#   wildcard.pem wildcard.key   SAN DNS:*.example.com (signed by ca)
#   exact.pem exact.key         SAN DNS:exact.test (signed by ca)
#   system-ca/                  ca.pem under its hashed name, to stand in
#                               for the system store (SSL_CERT_DIR)
set -eu

# No `cd`: every path is spelled out, so that the tools run in the
# caller's directory (valgrind's --trace-children re-reads its options,
# relative paths included, in each child).
o=${1:?usage: gen-certs.sh OUTDIR [--rsa]}
rsa=${2:-}
mkdir -p "$o"
o=$(cd "$o" && pwd)
cnf=$o/ca.cnf

cat > "$cnf" <<CNF
[ca]
default_ca = weft_ca
[weft_ca]
dir = $o
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[policy_any]
organizationName = optional
commonName = supplied
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_inter]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_server]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
[v3_wrong]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
[v3_wildcard]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = DNS:*.example.com
[v3_exact]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = DNS:exact.test
[v3_client]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
CNF

ec_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$o/$1" 2>/dev/null
}

# A root CA: name, subject.
root() {
    ec_key "$1.key"
    openssl req -new -x509 -config "$cnf" -key "$o/$1.key" -subj "$2" \
        -days 3650 -sha256 -extensions v3_ca -out "$o/$1.pem"
}

# A certificate signed by CA $2: name, ca, subject, extensions section,
# then extra `openssl ca` options (dates).
sign() {
    name=$1 ca=$2 subj=$3 ext=$4
    shift 4
    [ -f "$o/$name.key" ] || ec_key "$name.key"
    openssl req -new -config "$cnf" -key "$o/$name.key" -subj "$subj" \
        -out "$o/$name.csr"
    rm -rf "$o/newcerts" "$o"/index.txt*
    mkdir "$o/newcerts"
    : > "$o/index.txt"
    openssl rand -hex 8 > "$o/serial"
    openssl ca -batch -config "$cnf" -cert "$o/$ca.pem" \
        -keyfile "$o/$ca.key" -extfile "$cnf" -extensions "$ext" \
        -preserveDN -notext -in "$o/$name.csr" -out "$o/$name.pem" "$@" \
        2>/dev/null
    rm -f "$o/$name.csr"
}

root ca "/O=weft test/CN=weft test CA"
root other-ca "/O=weft other/CN=weft other CA"

sign server ca "/O=weft test/CN=localhost" v3_server -days 825
openssl pkey -in "$o/server.key" -aes256 -passout pass:weft-pass \
    -out "$o/server-enc.key"

if [ "$rsa" = --rsa ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
        -out "$o/server-rsa.key" 2>/dev/null
    sign server-rsa ca "/O=weft test/CN=localhost" v3_server -days 825
fi

sign inter ca "/O=weft test/CN=weft test intermediate" v3_inter -days 3650
sign leaf-inter inter "/O=weft test/CN=localhost" v3_server -days 825
cat "$o/leaf-inter.pem" "$o/inter.pem" > "$o/leaf-inter-chain.pem"

sign client ca "/O=weft test/CN=weft client" v3_client -days 825
sign expired ca "/O=weft test/CN=localhost" v3_server \
    -startdate 20200101000000Z -enddate 20200102000000Z
sign future ca "/O=weft test/CN=localhost" v3_server \
    -startdate 20990101000000Z -enddate 20991231000000Z
sign wronghost ca "/O=weft test/CN=wrong.example" v3_wrong -days 825
sign wildcard ca "/O=weft test/CN=*.example.com" v3_wildcard -days 825
sign exact ca "/O=weft test/CN=exact.test" v3_exact -days 825
sign untrusted other-ca "/O=weft other/CN=localhost" v3_server -days 825
cat "$o/untrusted.pem" "$o/other-ca.pem" > "$o/untrusted-chain.pem"
sign client-untrusted other-ca "/O=weft other/CN=weft client" v3_client \
    -days 825
sign client-expired ca "/O=weft test/CN=weft client" v3_client \
    -startdate 20200101000000Z -enddate 20200102000000Z

ec_key selfsigned.key
openssl req -new -x509 -config "$cnf" -key "$o/selfsigned.key" \
    -subj "/O=weft test/CN=localhost" -days 825 -sha256 \
    -addext "subjectAltName = DNS:localhost, IP:127.0.0.1" \
    -addext "basicConstraints = CA:FALSE" -out "$o/selfsigned.pem"

mkdir -p "$o/system-ca"
cp "$o/ca.pem" "$o/system-ca/"
openssl rehash "$o/system-ca"

rm -rf "$o/newcerts" "$o"/index.txt* "$o"/serial* "$cnf"
