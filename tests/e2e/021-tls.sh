#!/usr/bin/env bash
# TLS to the Threat Stack API: verification is always on. A fake serving HTTPS with a
# certificate from a private CA is trusted only through api_ca_file; a certificate for
# another name is refused even with the right CA.
. "$(dirname "$0")/lib.sh"

pki=$WORK/pki
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tsgraphd test CA" \
	-keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
cert() { # name, subjectAltName
	openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$pki/$1.key" \
		-out "$pki/$1.csr" 2>/dev/null
	printf 'subjectAltName=%s\n' "$2" >"$pki/$1.ext"
	openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
		-CAcreateserial -days 2 -extfile "$pki/$1.ext" -out "$pki/$1.pem" 2>/dev/null
}
cert good "IP:127.0.0.1"
cert other "DNS:api.example.com"

start_https_fake() { # certificate name
	start_fake --agents 5 --tls-cert "$pki/$1.pem" --tls-key "$pki/$1.key"
	FAKE_URL=${FAKE_URL/http:/https:}
}

start_https_fake good
write_config trusted '[threatstack]' "api_ca_file = $pki/ca.pem"
expect_status 0 "$TSGRAPHD" -c "$WORK/trusted.conf" check
expect_output "credentials OK"
expect_status 0 "$TSGRAPHD" -c "$WORK/trusted.conf" sync
expect_output "sync: "

# Without the private CA the system store does not know it: refused, classified as TLS.
write_config untrusted
expect_status 1 "$TSGRAPHD" -c "$WORK/untrusted.conf" check
expect_output "credentials FAILED (TLS"

# The right CA but a certificate for another name: refused.
kill "$FAKE_PID"; wait "$FAKE_PID" 2>/dev/null || true
start_https_fake other
write_config wrongname '[threatstack]' "api_ca_file = $pki/ca.pem"
expect_status 1 "$TSGRAPHD" -c "$WORK/wrongname.conf" check
expect_output "credentials FAILED (TLS"
echo "tls ok"
