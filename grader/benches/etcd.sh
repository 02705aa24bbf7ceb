#!/bin/sh
# Median time of grading every etcd check (lab etcd-secrets) on a live testkit cluster: real etcd
# with TLS and client certificates, real kube-apiserver with aescbc, 50 Secrets.
# Usage (from the workspace root): source .ci/env && grader/benches/etcd.sh
set -eu
cargo build -q --release -p hardlab-grader --bin hardlab-grade --example etcd_bench_cluster
fifo=$(mktemp -u)
mkfifo "$fifo"
args_file=$(mktemp)
# The example keeps the cluster up while its stdin (the fifo) stays open.
target/release/examples/etcd_bench_cluster <"$fifo" >"$args_file" &
exec 3>"$fifo"
while [ ! -s "$args_file" ]; do sleep 0.5; done
args=$(cat "$args_file")
echo "cluster: $args"
hyperfine --warmup 3 --runs 30 -i --export-json /tmp/hardlab-etcd-bench.json \
  "target/release/hardlab-grade live --lab etcd-secrets --format json $args --output /dev/null"
exec 3>&-
wait
rm -f "$fifo" "$args_file"
