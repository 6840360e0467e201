#!/usr/bin/env bash
# The AWS deployment (deploy/aws): synthesizes the CDK app offline for both
# identity choices, without building the Rust binary (skipBuild), then runs
# the template assertions with node's test runner.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
cd "$PASSGATE_ROOT/deploy/aws"

[ -d node_modules/aws-cdk-lib ] || npm ci --no-audit --no-fund >/dev/null

# No AWS account, no network: no version check, telemetry, notices or
# instance-metadata credential lookups.
export CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=1 AWS_EC2_METADATA_DISABLED=true

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for identity in passkeys cognito; do
  echo "-- cdk synth identity=$identity"
  npx --no cdk synth --quiet --no-notices --ci \
    -c skipBuild=true -c identity="$identity" -o "$out/$identity" </dev/null
  test -s "$out/$identity/Passgate.template.json"
done

echo "-- node --test"
node --test
