#!/bin/sh
# A private CA and the certificates an Inspector plant needs, with openssl:
#   ca.crt / ca.key                  the CA (keep ca.key offline once the certificates exist)
#   server.crt / server.key          the broker, for every --broker name (DNS or IP)
#   clients/NAME.crt / NAME.key      one per --client: workers, stations, the review app,
#                                    the registry host; the common name is the broker user
#
#   deploy/make-certs.sh -o deploy/secrets/tls --broker broker.plant-a.example --broker mosquitto \
#       --client worker --client review --client registry \
#       --client edge-plant-a-line-1-station-3
#
# Run it again with more --client names to add certificates: an existing CA and existing
# certificates are kept (delete a file to make it anew). Keys are unencrypted and 0600.
set -eu

usage() {
    echo "usage: $0 -o DIR --broker NAME [--broker NAME]... [--client NAME]... [--days N]" >&2
    exit 2
}

out=""
days=825
brokers=""
clients=""
while [ $# -gt 0 ]; do
    case "$1" in
    -o | --out) out="${2:?}"; shift 2 ;;
    --broker) brokers="$brokers ${2:?}"; shift 2 ;;
    --client) clients="$clients ${2:?}"; shift 2 ;;
    --days) days="${2:?}"; shift 2 ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$out" ] || { echo "-o DIR is required" >&2; usage; }
[ -n "$brokers" ] || { echo "at least one --broker NAME is required" >&2; usage; }
case "$days" in '' | *[!0-9]*) echo "--days must be a whole number" >&2; exit 2 ;; esac
for name in $clients; do
    # The name becomes a file name and the certificate's common name: keep it a broker user.
    case "$name" in *[!a-zA-Z0-9._-]* | .*) echo "bad client name: $name" >&2; exit 2 ;; esac
done

umask 077
mkdir -p "$out/clients"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$out/ca.key" ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -days "$days" -sha256 \
        -subj "/CN=Inspector private CA" \
        -addext "basicConstraints=critical,CA:true" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
    echo "made the CA: $out/ca.crt"
fi

# sign NAME KEY CRT EXTFILE
sign() {
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$2" -out "$tmp/req.csr" 2>/dev/null
    openssl x509 -req -in "$tmp/req.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
        -CAcreateserial -CAserial "$out/ca.srl" -days "$days" -sha256 \
        -extfile "$4" -out "$3" 2>/dev/null
}

if [ ! -f "$out/server.crt" ]; then
    san=""
    for name in $brokers; do
        case "$name" in
        *[!0-9.]*) entry="DNS:$name" ;;
        *) entry="IP:$name" ;;
        esac
        san="${san:+$san,}$entry"
    done
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:false\n' \
        "$san" >"$tmp/server.ext"
    first=${brokers# }
    sign "${first%% *}" "$out/server.key" "$out/server.crt" "$tmp/server.ext"
    echo "made the broker certificate for $san: $out/server.crt"
fi

printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:false\n' >"$tmp/client.ext"
for name in $clients; do
    if [ ! -f "$out/clients/$name.crt" ]; then
        sign "$name" "$out/clients/$name.key" "$out/clients/$name.crt" "$tmp/client.ext"
        echo "made the client certificate for $name: $out/clients/$name.crt"
    fi
done
# The public parts may be read by the services' users; the keys stay 0600.
chmod 644 "$out/ca.crt" "$out/server.crt"
for crt in "$out"/clients/*.crt; do
    [ -e "$crt" ] && chmod 644 "$crt"
done
chmod 755 "$out" "$out/clients"
