#!/usr/bin/env bash
# A moto EC2 server for the AWS provider's tests (a real HTTP EC2 API on loopback).
#
#   .ci/moto.sh start DIR [PORT]   start moto_server on 127.0.0.1:PORT (default 5055),
#                                  wait until it answers; writes DIR/moto.pid, DIR/url
#   .ci/moto.sh stop DIR           stop the server whose pid file is in DIR
#
# Export SKYSTATE_TEST_MOTO_URL=$(cat DIR/url) to make the tests use this server instead
# of starting their own (tests reset it with POST /moto-api/reset).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z "$cmd" || -z "$dir" ]]; then
    echo "usage: $0 start|stop DIR [PORT]" >&2
    exit 2
fi
mkdir -p "$dir"

case "$cmd" in
stop)
    pid=$(cat "$dir/moto.pid" 2>/dev/null || true)
    if [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; then
        for _ in $(seq 50); do
            state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
            [[ -z "$state" || "$state" == Z ]] && break
            sleep 0.1
        done
    fi
    rm -f "$dir/moto.pid"
    exit 0
    ;;
start) ;;
*)
    echo "unknown command $cmd (start|stop)" >&2
    exit 2
    ;;
esac

port=${3:-5055}
url="http://127.0.0.1:$port"
command -v moto_server >/dev/null || python3 -m pip install -q "moto[server,ec2]>=5"
moto_server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
echo $! >"$dir/moto.pid"
for _ in $(seq 200); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/moto-api/reset', data=b'')" "$url" 2>/dev/null; then
        echo "$url" >"$dir/url"
        echo "moto listening on $url (dir $dir)"
        exit 0
    fi
    sleep 0.05
done
echo "moto_server did not listen on $url; log:" >&2
cat "$dir/moto.log" >&2 || true
exit 1
