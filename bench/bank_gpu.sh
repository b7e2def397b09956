#!/usr/bin/env bash
# Call 2 of bench/bank_gpu.py's two device calls, on the device machine: joins the two carried halves
# of CIFAR-10 into one folder, installs the carried wheels, and trains the bank's missing runs for at
# most $1 seconds (default 530), writing under $OUT. Further arguments go to `bank_gpu.py train`
# (a dry run here: PYTHON=.venv/bin/python OUT=/tmp/o bash bench/bank_gpu.sh 60 --device cpu --jobs 2 --steps 2).
set -uo pipefail
cd "$(dirname "$0")/.."
budget=${1:-530}
shift || true
py=${PYTHON:-python3}
out=${OUT:-/tmp/bank_gpu_out}
for f in .gpu/train/data_batch_1.bin .gpu/train/data_batch_2.bin .gpu/test/test_batch.bin; do
  [ -f "$f" ] || { echo "$f is not here: call 1 (carry .gpu/train) must run just before, on the same warm machine"; exit 2; }
done
if ! "$py" -c "import thop" 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
data=/tmp/bank_gpu_c10
mkdir -p "$data" && ln -sf "$PWD"/.gpu/train/* "$PWD"/.gpu/test/* "$data"/ || exit 1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
exec "$py" bench/bank_gpu.py train --data "$data" --out "$out" --seconds "$budget" "$@"
