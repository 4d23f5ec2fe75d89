#!/usr/bin/env bash
# Benchmarks (figures printed, never asserted). Usage: scripts/bench.sh [eval|deploy|update|sandbox|list]
#
#   eval  one-shot account query: `geusemaker eval 'ec2::vpcs()'` against
#         `aws ec2 describe-vpcs` (aws-cli), both against the same local moto server;
#         median wall time of each over N runs and the ratio. Target: ≥ 15× faster than
#         aws-cli and < 60 ms, release build.
#   deploy the dev deploy against moto behind the fault proxy at +100 ms per request: AWS
#         requests, wall time, the longest chain of dependent requests × 100 ms, and the
#         ratio (goal ≤ 1.25×). See tests/bench_deploy.rs.
#   update the same for a re-run on a live dev stack: a new n8n image applied in place through
#         SSM, then a type change that replaces the instance and moves its data volume.
#   sandbox how long the sandbox takes to stop a recipe that grows data without end (an array
#         by push and by +=, a map, a string), release build. Target: about a second or less.
#   list  `geusemaker list` of 20 stacks whose state is in S3 (one listing, then the documents
#         fetched in parallel; moto's S3 on loopback) against the same 20 in local files:
#         median wall time of each and the ratio, release build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/geusemaker-target}"
what="${1:-eval}"
runs="${RUNS:-25}"
MOTO_VERSION=5.2.1

python3 -c "import moto" 2>/dev/null || python3 -m pip install --quiet --root-user-action=ignore "moto[server]==$MOTO_VERSION"
command -v aws >/dev/null 2>&1 || python3 -m pip install --quiet --root-user-action=ignore awscli

if [ "$what" = deploy ]; then
  exec cargo test --release --locked --quiet --test main -- --ignored --nocapture bench_deploy::deploy_critical_path
fi
if [ "$what" = update ]; then
  exec cargo test --release --locked --quiet --test main -- --ignored --nocapture bench_deploy::update_critical_paths
fi

cargo build --release --locked --quiet
bin="$CARGO_TARGET_DIR/release/geusemaker"

if [ "$what" = sandbox ]; then
  echo "sandbox benchmark (release build): time until a runaway recipe is stopped"
  for script in 'let a = []; loop { a.push(1); }' \
                'let a = []; loop { a += [1]; }' \
                'let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }' \
                'let s = ""; loop { s += "xxxxxxxx"; }'; do
    start=$(date +%s%N)
    why=$("$bin" eval "$script" 2>&1 >/dev/null | head -n 1 || true)
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf '  %-62s %6d ms  %s\n' "$script" "$ms" "$why"
  done
  exit 0
fi

port="$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')"
python3 -m moto.server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/moto-api/config" && break; sleep 0.1; done

export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
GEUSEMAKER_HOME="$(mktemp -d)"
export GEUSEMAKER_HOME
aws ec2 describe-vpcs >/dev/null   # warm moto's EC2 backend

# Median wall time (ms) of a command over $runs runs (after a warm-up run).
median_ms() { python3 scripts/median-ms.py "$runs" "$@"; }

case "$what" in
  eval)
    gm=$(median_ms "$bin" eval --json 'ec2::vpcs()')
    cli=$(median_ms aws ec2 describe-vpcs --output json)
    ratio=$(python3 -c "print(f'{$cli / $gm:.1f}')")
    echo "eval benchmark ($runs runs each, release build, moto on loopback)"
    echo "  geusemaker eval 'ec2::vpcs()'   median ${gm} ms"
    echo "  aws ec2 describe-vpcs           median ${cli} ms"
    echo "  ratio                           ${ratio}x"
    ;;
  list)
    bucket="gm-bench-$$"
    aws s3api create-bucket --bucket "$bucket" >/dev/null
    mkdir -p "$GEUSEMAKER_HOME/stacks"
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    for i in $(seq -w 1 20); do
      doc="$GEUSEMAKER_HOME/stacks/bench-$i.json"
      python3 - "$doc" "bench-$i" "$now" <<'PY'
import json, sys
path, name, now = sys.argv[1:]
runs = [{"id": f"r{k}", "recipe": "dev", "started_at": now, "finished_at": now,
         "outcome": "succeeded"} for k in range(5)]
doc = {"schema_version": 2, "stack": name, "status": "running", "region": "us-east-1",
       "recipe": "dev", "created_at": now, "updated_at": now, "params": {},
       "values": {}, "outputs": {"n8n_url": "https://n8n.example"}, "resources": [],
       "runs": runs}
open(path, "w").write(json.dumps(doc, indent=2) + "\n")
PY
      aws s3api put-object --bucket "$bucket" --key "team/stacks/bench-$i.json" \
        --body "$doc" --server-side-encryption AES256 >/dev/null
    done
    local_ms=$(median_ms "$bin" list --state local)
    s3_ms=$(median_ms "$bin" list --state "s3://$bucket/team")
    ratio=$(python3 -c "print(f'{$s3_ms / $local_ms:.2f}')")
    echo "list benchmark: 20 stacks ($runs runs each, release build, moto on loopback)"
    echo "  state in local files            median ${local_ms} ms"
    echo "  state in S3 (list + 20 gets)    median ${s3_ms} ms"
    echo "  ratio S3 / local                ${ratio}x"
    ;;
  *) echo "usage: scripts/bench.sh [eval|deploy|update|sandbox|list]" >&2; exit 2 ;;
esac
