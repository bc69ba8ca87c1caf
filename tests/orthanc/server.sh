#!/usr/bin/env bash
# An Orthanc DICOM server with its DICOMweb plugin on 127.0.0.1 for the tests, in a folder of
# its own: free HTTP and DICOM ports, HTTP basic auth (user medsynth), storage in the folder.
# Needs Debian's orthanc and orthanc-dicomweb (tests/run.sh installs them when run as root).
#
#   tests/orthanc/server.sh start DIR   # prints ORTHANC_URL=http://127.0.0.1:PORT once it answers
#   tests/orthanc/server.sh stop DIR    # stops the server it started, by PID
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?a folder for the server}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case "$cmd" in
start)
    mkdir -p "$dir"/storage "$dir"/index
    dir=$(cd "$dir" && pwd)
    plugin=""
    for p in /usr/share/orthanc/plugins/libOrthancDicomWeb.so /usr/lib/orthanc/libOrthancDicomWeb.so*; do
        if [ -e "$p" ]; then plugin=$p; break; fi
    done
    if [ -z "$plugin" ]; then
        echo "orthanc/server.sh: the DICOMweb plugin (Debian orthanc-dicomweb) is not installed" >&2
        exit 1
    fi
    port=$(free_port)
    cat > "$dir"/orthanc.json <<CONF
{
  "Name": "medsynth-test",
  "StorageDirectory": "$dir/storage",
  "IndexDirectory": "$dir/index",
  "HttpPort": $port,
  "DicomPort": $(free_port),
  "DicomServerEnabled": false,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": true,
  "RegisteredUsers": { "medsynth": "test-password" },
  "StorageCompression": false,
  "OverwriteInstances": false,
  "Plugins": [ "$plugin" ],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/" }
}
CONF
    Orthanc "$dir"/orthanc.json > "$dir"/orthanc.log 2>&1 &
    echo $! > "$dir"/orthanc.pid
    for _ in $(seq 1 100); do
        if curl -sf -u medsynth:test-password "http://127.0.0.1:$port/dicom-web/studies" -o /dev/null; then
            echo "ORTHANC_URL=http://127.0.0.1:$port"
            exit 0
        fi
        if ! kill -0 "$(cat "$dir"/orthanc.pid)" 2>/dev/null; then
            echo "orthanc/server.sh: Orthanc exited; its log:" >&2
            cat "$dir"/orthanc.log >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "orthanc/server.sh: Orthanc did not answer within 10 s; its log:" >&2
    cat "$dir"/orthanc.log >&2
    kill "$(cat "$dir"/orthanc.pid)" 2>/dev/null || true
    exit 1
    ;;
stop)
    if [ -f "$dir"/orthanc.pid ]; then
        pid=$(cat "$dir"/orthanc.pid)
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || exit 0
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
