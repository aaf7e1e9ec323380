#!/usr/bin/env bash
# A single-node Ceph RADOS Gateway (S3) on loopback, for the integration tier (make test-rgw)
# and the benchmarks: one monitor, one in-memory (memstore) OSD, one radosgw, auth none.
#
#   scripts/rgw.sh up       install the Debian packages if missing, start, print exports
#   scripts/rgw.sh status   what runs, and whether S3 answers
#   scripts/rgw.sh down     stop the daemons and remove the state directory
#
# Settings (environment): RGW_DIR (state, default /tmp/ddb-backup-rgw), RGW_PORT (S3, 7480),
# RGW_MON_PORT (monitor, msgr2 only, 3300), RGW_ACCESS_KEY / RGW_SECRET_KEY (the S3 user's
# keys), RGW_MEMSTORE_BYTES (OSD capacity, 2 GiB). Everything binds 127.0.0.1 only; the data
# lives in memory and is gone after `down`. `up` is idempotent: a running, answering stack
# is reused; a half-started or dead one is cleaned away and started afresh.
set -euo pipefail

RGW_DIR=${RGW_DIR:-/tmp/ddb-backup-rgw}
RGW_PORT=${RGW_PORT:-7480}
RGW_MON_PORT=${RGW_MON_PORT:-3300}
RGW_ACCESS_KEY=${RGW_ACCESS_KEY:-ddbbackuprgwaccess}
RGW_SECRET_KEY=${RGW_SECRET_KEY:-ddbbackuprgwsecretkey0123456789}
RGW_MEMSTORE_BYTES=${RGW_MEMSTORE_BYTES:-2147483648}
RGW_UID=ddb-backup
ENDPOINT="http://127.0.0.1:${RGW_PORT}"
CONF="$RGW_DIR/ceph.conf"
DAEMONS=(mon.a osd.0 client.rgw.a)
declare -A PROGRAM=([mon.a]=ceph-mon [osd.0]=ceph-osd [client.rgw.a]=radosgw)
MARKER=.ddb-backup-rgw # only a directory holding this file is ever removed

say() { echo "rgw.sh: $*" >&2; }
die() {
    echo "rgw.sh: error: $*" >&2
    exit 1
}

# ceph CLI calls never hang: the monitor must answer within the timeout.
ceph_cli() { timeout 60 ceph -c "$CONF" --connect-timeout 20 "$@"; }

pid_of() { # daemon name -> pid if that daemon is alive (and is that program: no reused pid)
    local file="$RGW_DIR/run/$1.pid" pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(ps -o comm= -p "$pid" 2>/dev/null) == "${PROGRAM[$1]}" ]] || return 1
    echo "$pid"
}

remove_state() {
    [[ -e $RGW_DIR ]] || return 0
    [[ -f $RGW_DIR/$MARKER ]] ||
        die "$RGW_DIR exists but was not made by this script (no $MARKER); not touching it"
    rm -rf "$RGW_DIR"
}

s3_answers() { # an anonymous ListBuckets: RGW answers 200 with an empty list
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$ENDPOINT/" 2>/dev/null) || true
    [[ $code == 200 ]]
}

user_works() { # a signed ListBuckets with the user's keys (AWS SigV4 through curl)
    local code empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user "$RGW_ACCESS_KEY:$RGW_SECRET_KEY" \
        -H "x-amz-content-sha256: $empty_sha256" "$ENDPOINT/" 2>/dev/null) || true
    [[ $code == 200 ]]
}

print_exports() {
    cat <<EOF
export AWS_ENDPOINT_URL_S3=$ENDPOINT
export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY
export RGW_ENDPOINT=$ENDPOINT
export RGW_ACCESS_KEY=$RGW_ACCESS_KEY
export RGW_SECRET_KEY=$RGW_SECRET_KEY
EOF
}

install_packages() {
    local missing=() pkg
    for pkg in radosgw ceph-mon ceph-osd; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$pkg")
    done
    command -v curl >/dev/null || missing+=(curl)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "missing packages ${missing[*]}: run as root or install them"
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get"
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef
        -o Dpkg::Options::=--force-confold "${missing[@]}")
    if ! "${apt[@]}" >"$RGW_DIR.apt.log" 2>&1; then
        apt-get update -q >>"$RGW_DIR.apt.log" 2>&1 || true
        "${apt[@]}" >>"$RGW_DIR.apt.log" 2>&1 ||
            die "apt-get install ${missing[*]} failed; see $RGW_DIR.apt.log"
    fi
    rm -f "$RGW_DIR.apt.log"
}

port_free() { # nothing listens on 127.0.0.1:$1 (or on all addresses)
    ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

write_conf() {
    local fsid=$1
    cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$RGW_MON_PORT
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
# No authentication at all (a throwaway loopback stack); radosgw needs the secure modes
# listed or it loops on authentication.
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
ms client mode = crc secure
# One OSD: single-copy pools, CRUSH choosing OSDs (not hosts), few placement groups.
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
run dir = $RGW_DIR/run
pid file = $RGW_DIR/run/\$name.pid
admin socket = $RGW_DIR/run/\$name.asok
log file = $RGW_DIR/log/\$name.log
keyring = /dev/null
crash dir = $RGW_DIR/crash
mon data = $RGW_DIR/mon/\$cluster-\$id
osd data = $RGW_DIR/osd/\$cluster-\$id
rgw data = $RGW_DIR/rgw/\$cluster-\$id

[osd]
osd objectstore = memstore
memstore device bytes = $RGW_MEMSTORE_BYTES
osd crush update on start = true

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw enable usage log = false
rgw dns name = 127.0.0.1
EOF
}

wait_for() { # seconds, description, command...: poll until the command succeeds
    local seconds=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
    say "$what"
}

osd_up() { ceph_cli osd dump 2>/dev/null | grep -q '^osd\.0 up .* in '; }

stop_daemons() {
    local name pid pids=()
    for name in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$name"); then
            kill "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    local deadline=$((SECONDS + 20))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                kill -9 "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    done
}

cmd_up() {
    local started=$SECONDS
    if [[ -s $CONF ]] && pid_of client.rgw.a >/dev/null && pid_of osd.0 >/dev/null &&
        pid_of mon.a >/dev/null && user_works; then
        say "already running at $ENDPOINT"
        print_exports
        return 0
    fi
    if [[ -e $RGW_DIR ]]; then
        [[ -f $RGW_DIR/$MARKER ]] ||
            die "$RGW_DIR exists but was not made by this script; set RGW_DIR elsewhere"
        say "cleaning a stale or partial stack in $RGW_DIR"
        stop_daemons
        remove_state
    fi
    install_packages
    port_free "$RGW_PORT" || die "port $RGW_PORT is taken (set RGW_PORT)"
    port_free "$RGW_MON_PORT" || die "port $RGW_MON_PORT is taken (set RGW_MON_PORT)"
    mkdir -p "$RGW_DIR"/{run,log,crash,mon/ceph-a,osd/ceph-0,rgw/ceph-rgw.a}
    touch "$RGW_DIR/$MARKER"
    local fsid
    fsid=$(cat /proc/sys/kernel/random/uuid)
    write_conf "$fsid"

    # The monitor: a one-member monmap, then a fresh store.
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$RGW_MON_PORT]" \
        "$RGW_DIR/monmap" >/dev/null 2>&1 || die "monmaptool failed"
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$RGW_DIR/monmap" >"$RGW_DIR/log/mkfs-mon.out" 2>&1 ||
        die "ceph-mon --mkfs failed; see $RGW_DIR/log/mkfs-mon.out"
    ceph-mon -c "$CONF" -i a 2>>"$RGW_DIR/log/mon.a.out" ||
        die "ceph-mon did not start; see $RGW_DIR/log/mon.a.log"
    wait_for 30 "monitor up" ceph_cli mon stat ||
        die "the monitor does not answer; see $RGW_DIR/log/mon.a.log"

    # The OSD: registered with the monitor, a memstore formatted, then started.
    local uuid id
    uuid=$(cat /proc/sys/kernel/random/uuid)
    id=$(ceph_cli osd new "$uuid" 2>/dev/null) || die "ceph osd new failed"
    [[ $id == 0 ]] || die "expected OSD id 0, got '$id'"
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >"$RGW_DIR/log/mkfs-osd.out" 2>&1 ||
        die "ceph-osd --mkfs failed; see $RGW_DIR/log/mkfs-osd.out"
    ceph-osd -c "$CONF" -i 0 2>>"$RGW_DIR/log/osd.0.out" ||
        die "ceph-osd did not start; see $RGW_DIR/log/osd.0.log"
    wait_for 60 "OSD up" osd_up || die "the OSD did not come up; see $RGW_DIR/log/osd.0.log"

    # The gateway (it creates its pools on first start), then the S3 user.
    radosgw -c "$CONF" -n client.rgw.a 2>>"$RGW_DIR/log/client.rgw.a.out" ||
        die "radosgw did not start; see $RGW_DIR/log/client.rgw.a.log"
    wait_for 90 "radosgw answers on $ENDPOINT" s3_answers ||
        die "radosgw does not answer on $ENDPOINT; see $RGW_DIR/log/client.rgw.a.log"
    if ! timeout 60 radosgw-admin -c "$CONF" user info --uid="$RGW_UID" >/dev/null 2>&1; then
        timeout 60 radosgw-admin -c "$CONF" user create --uid="$RGW_UID" \
            --display-name="ddb-backup integration tests" \
            --access-key="$RGW_ACCESS_KEY" --secret-key="$RGW_SECRET_KEY" \
            >"$RGW_DIR/log/user-create.out" 2>&1 ||
            die "radosgw-admin user create failed; see $RGW_DIR/log/user-create.out"
    fi
    wait_for 30 "S3 user ready" user_works ||
        die "signed S3 requests with the user's keys fail on $ENDPOINT"
    say "up in $((SECONDS - started)) s at $ENDPOINT (state: $RGW_DIR)"
    print_exports
}

cmd_down() {
    if [[ ! -e $RGW_DIR ]]; then
        say "not running (no $RGW_DIR)"
        return 0
    fi
    [[ -f $RGW_DIR/$MARKER ]] ||
        die "$RGW_DIR exists but was not made by this script (no $MARKER); not touching it"
    stop_daemons
    remove_state
    say "stopped; removed $RGW_DIR"
}

cmd_status() {
    local name pid running=0
    if [[ ! -e $RGW_DIR ]]; then
        echo "not running (no $RGW_DIR)"
        return 3
    fi
    for name in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$name"); then
            echo "$name: running (pid $pid)"
            running=$((running + 1))
        else
            echo "$name: not running"
        fi
    done
    if user_works; then
        echo "s3: $ENDPOINT answers signed requests"
        [[ $running -eq ${#DAEMONS[@]} ]] && return 0
    else
        echo "s3: $ENDPOINT does not answer"
    fi
    return 1
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
