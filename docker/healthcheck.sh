#!/bin/bash
# flowfleet-healthcheck [PORT] [PATH]: succeeds when http://127.0.0.1:PORT PATH
# (default 4000 /health) answers 200. Plain bash: the image ships no curl.
port=${1:-4000}
path=${2:-/health}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$path" "$port" >&3
IFS= read -r -t 5 status <&3 || exit 1
[[ $status == "HTTP/1."?" 200"* ]]
