#!/usr/bin/env bash
# Make an Airflow virtualenv (its own: Airflow's pins differ from icefloe's) with this
# provider, Cloudera's provider and the HTTP provider. Usage: install-airflow.sh VENV_DIR
# Does nothing when VENV_DIR was made by this same script and provider version.
set -euo pipefail
venv=${1:?usage: install-airflow.sh VENV_DIR}
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
wanted=$(cat "$0" "$here/pyproject.toml" | sha256sum | cut -c1-16)
if [ -f "$venv/.icefloe-airflow" ] && [ "$(cat "$venv/.icefloe-airflow")" = "$wanted" ]; then
    exit 0
fi
echo "making the Airflow virtualenv $venv (Airflow 3.3, icefloe's and Cloudera's providers)" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==0.13.*"
"$venv/bin/uv" pip install --quiet --python "$venv/bin/python" \
    "apache-airflow==3.3.2" "apache-airflow-providers-http==6.3.0" \
    "cloudera-airflow-provider==2.4.0" -e "$here"
echo "$wanted" > "$venv/.icefloe-airflow"
