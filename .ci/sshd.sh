#!/usr/bin/env bash
# A throw-away sshd for the SSH provider's tests (no systemd here: we start it ourselves).
#
#   .ci/sshd.sh start DIR [PORT [ADDRESS]]   install openssh-server if missing, make keys
#                                            and a config in DIR, start sshd, wait for it
#   .ci/sshd.sh stop DIR                     stop the sshd whose pid file is in DIR, and
#                                            the sessions it still serves
#   .ci/sshd.sh install                      only install openssh-server if missing
#
# DIR gets: ssh_host_ed25519_key (host key), id_ed25519 (+.pub; the client key tests log
# in with), authorized_keys, sshd_config, sshd.pid, sshd.log, port. PORT defaults to
# 2222, ADDRESS to 127.0.0.1. Only root can run it (sshd must switch users).
# Export SKYSTATE_TEST_SSHD_DIR=DIR to make the tests use this sshd instead of their own.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
install() {
    if [[ ! -x /usr/sbin/sshd ]]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq openssh-server >/dev/null
    fi
}

if [[ "$cmd" == install ]]; then
    install
    exit 0
fi
if [[ -z "$cmd" || -z "$dir" ]]; then
    echo "usage: $0 start|stop DIR [PORT [ADDRESS]] | install" >&2
    exit 2
fi

stop() {
    local pid sessions
    pid=$(cat "$dir/sshd.pid" 2>/dev/null || true)
    # The sessions it serves (its children) outlive the listener: stop them too.
    sessions=$([[ -n "$pid" ]] && ps -o pid= --ppid "$pid" 2>/dev/null || true)
    for session in $sessions; do
        kill "$session" 2>/dev/null || true
    done
    if [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; then
        for _ in $(seq 50); do  # gone, or a zombie nobody reaps (no init in containers)
            state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
            [[ -z "$state" || "$state" == Z ]] && break
            sleep 0.1
        done
    fi
    rm -f "$dir/sshd.pid"
}

case "$cmd" in
stop)
    stop
    exit 0
    ;;
start) ;;
*)
    echo "unknown command $cmd (start|stop)" >&2
    exit 2
    ;;
esac

port=${3:-2222}
address=${4:-127.0.0.1}
install
command -v ssh-keygen >/dev/null

mkdir -p "$dir" /run/sshd
chmod 0755 /run/sshd
dir=$(cd "$dir" && pwd)
[[ -f "$dir/ssh_host_ed25519_key" ]] || ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh_host_ed25519_key"
[[ -f "$dir/id_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -C skystate-test -f "$dir/id_ed25519"
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
chmod 0600 "$dir/id_ed25519" "$dir/ssh_host_ed25519_key" "$dir/authorized_keys"

cat >"$dir/sshd_config" <<CONF
Port $port
ListenAddress $address
HostKey $dir/ssh_host_ed25519_key
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
AcceptEnv LANG LC_*
CONF

if [[ -f "$dir/sshd.pid" ]] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; then
    stop  # restart with the fresh config
fi
/usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
echo "$port" >"$dir/port"

for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/$address/$port") 2>/dev/null; then
        echo "sshd listening on $address:$port (dir $dir)"
        exit 0
    fi
    sleep 0.05
done
echo "sshd did not listen on $address:$port; log:" >&2
cat "$dir/sshd.log" >&2 || true
exit 1
