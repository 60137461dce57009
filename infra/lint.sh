#!/usr/bin/env bash
# Lints the SAM template with cfn-lint, twice:
#   1. infra/template.yaml as written (cfn-lint validates SAM resources natively);
#   2. the CloudFormation that the SAM transform makes of it, translated offline with
#      aws-sam-translator (the library AWS runs for Transform: AWS::Serverless-2016-10-31).
# Exits non-zero on any lint error or warning, or if the translation fails.
#
# Needs only PyPI: cfn-lint and aws-sam-translator are installed, pinned, into a venv at
# $NOMMER_LINT_VENV (default $HOME/.cache/nommer/venv-lint) when missing or out of date.
# No AWS account, credentials or network access to AWS is used.
#
# Usage: bash infra/lint.sh [template]   (default: infra/template.yaml)
# Set NOMMER_LINT_OUT=path to keep the translated CloudFormation (JSON) there; otherwise
# it lives in a temporary directory removed on exit. With NOMMER_LINT_TRANSLATE_ONLY=1 it
# only translates (no cfn-lint): the tests read the translation (tests/tests/sam/mod.rs).
set -euo pipefail

CFN_LINT_VERSION=1.58.0
SAM_TRANSLATOR_VERSION=1.115.0
REQUIREMENTS=("cfn-lint==${CFN_LINT_VERSION}" "aws-sam-translator==${SAM_TRANSLATOR_VERSION}")

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
template="${1:-$here/template.yaml}"
venv="${NOMMER_LINT_VENV:-$HOME/.cache/nommer/venv-lint}"

log() { printf '==> %s\n' "$*"; }
die() { printf 'lint.sh: %s\n' "$*" >&2; exit 1; }

[[ -f "$template" ]] || die "no template at $template"

# ------------------------------------------------------------------ the venv
# Both packages need Python >= 3.10 (cfn-lint 1.58 also < 3.15).
find_python() {
    local c
    for c in ${NOMMER_PYTHON:-} python3 python3.14 python3.13 python3.12 python3.11 python3.10; do
        command -v "$c" >/dev/null 2>&1 || continue
        if "$c" -c 'import sys, venv; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 15) else 1)' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

stamp="$venv/.nommer-requirements"
wanted="${REQUIREMENTS[*]}"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
    python="$(find_python)" || die "need Python 3.10-3.14 with the venv module (set NOMMER_PYTHON)"
    log "creating lint venv at $venv with $("$python" --version 2>&1)"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    log "installing ${wanted}"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
    printf '%s' "$wanted" >"$stamp"
else
    log "using lint venv at $venv (${wanted})"
fi
py="$venv/bin/python"
cfn_lint="$venv/bin/cfn-lint"

# Nothing below may reach AWS: no profile, no credentials, a fixed region for the
# translator's pseudo parameters (AWS::Region, AWS::Partition).
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN || true

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0

translate_only="${NOMMER_LINT_TRANSLATE_ONLY:-}"

# ------------------------------------------------------------------ 1. the SAM template
if [[ -n "$translate_only" ]]; then
    log "NOMMER_LINT_TRANSLATE_ONLY: no cfn-lint"
elif log "cfn-lint $("$cfn_lint" --version | awk '{print $2}') on ${template#"$PWD"/} (SAM)"
    "$cfn_lint" --non-zero-exit-code warning -- "$template"; then
    log "SAM template: no errors or warnings"
else
    log "SAM template: cfn-lint found problems (above)"
    status=1
fi

# ------------------------------------------------------------------ 2. the translated CloudFormation
translated="${NOMMER_LINT_OUT:-$work/template.cfn.json}"
log "translating with aws-sam-translator ${SAM_TRANSLATOR_VERSION} (offline) -> $translated"
if ! "$py" - "$template" "$translated" <<'PY'; then
import json
import sys

from cfnlint.decode import decode
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform

src, dst = sys.argv[1], sys.argv[2]

# cfn-lint's decoder reads the short intrinsic forms (!Sub, !GetAtt, ...) into their
# long forms; a JSON round trip leaves plain dicts, lists and strings.
template, problems = decode(src)
if problems:
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    sys.exit(1)
template = json.loads(json.dumps(template))


class OfflinePolicyLoader:
    """Stands in for samtranslator's ManagedPolicyLoader, which lists AWS managed
    policies through IAM. The template names no managed policy by name (SAM adds the
    ones it needs by ARN), so an empty map is enough and nothing calls AWS."""

    def load(self):
        return {}


# `sam package` would upload each local CodeUri and put an s3:// URI in its place; the
# translator accepts nothing else, so do the same here with a placeholder bucket.
for name, res in template.get("Resources", {}).items():
    props = res.get("Properties") or {}
    uri = props.get("CodeUri")
    if isinstance(uri, str) and not uri.startswith("s3://"):
        props["CodeUri"] = "s3://nommer-lint-placeholder/" + uri.lstrip("./")
        print(f"  {name}: CodeUri {uri} -> {props['CodeUri']} (as sam package would)")

try:
    out = transform(template, {}, OfflinePolicyLoader())
except InvalidDocumentException as e:
    print("  SAM translation failed:", file=sys.stderr)
    for cause in e.causes:
        print(f"    {cause.message}", file=sys.stderr)
    sys.exit(1)

with open(dst, "w") as f:
    json.dump(out, f, indent=2, sort_keys=True)
kinds = {}
for res in out["Resources"].values():
    kinds[res["Type"]] = kinds.get(res["Type"], 0) + 1
print(f"  {len(out['Resources'])} resources:")
for kind in sorted(kinds):
    print(f"    {kinds[kind]:3d} {kind}")
PY
    log "SAM translation failed"
    exit 1
fi

if [[ -n "$translate_only" ]]; then
    log "translated: $translated"
    exit 0
fi
log "cfn-lint on the translated CloudFormation"
if "$cfn_lint" --non-zero-exit-code warning -- "$translated"; then
    log "translated template: no errors or warnings"
else
    log "translated template: cfn-lint found problems (above)"
    status=1
fi

if [[ $status -eq 0 ]]; then
    log "lint passed"
else
    log "lint FAILED"
fi
exit "$status"
