'use strict';
// Deployment options, read from CDK context (`-c key=value` or cdk.json).
// Values from the command line arrive as strings, values from cdk.json keep
// their JSON type, so every parser accepts both.

const logs = require('aws-cdk-lib/aws-logs');

const IDENTITIES = ['passkeys', 'cognito'];
const RETENTION_DAYS = Object.values(logs.RetentionDays).filter((v) => typeof v === 'number');

const DEFAULTS = {
  stackName: 'Passgate',
  identity: 'passkeys',
  skipBuild: false,
  publicUrl: undefined,
  removalPolicy: 'retain',
  deletionProtection: undefined, // follows removalPolicy
  reservedConcurrency: undefined,
  logRetentionDays: 30,
  logLevel: 'info',
  cognitoDomainPrefix: undefined, // derived from the stack name and account
  backendUrl: undefined, // the MCP server passgate protects (PASSGATE_BACKEND)
  backendFunctionArn: undefined, // that server's Lambda, for a Function URL with AWS_IAM auth
  gatewayConfig: undefined, // a gateway file (several backends), shipped in a layer
};

function parseBool(name, value) {
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new Error(`context ${name} must be true or false, got ${JSON.stringify(value)}`);
}

function parseInteger(name, value, min) {
  const n = typeof value === 'number' ? value : Number(String(value).trim());
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`context ${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function oneOf(name, value, allowed) {
  if (!allowed.includes(value)) {
    throw new Error(`context ${name} must be one of ${allowed.join('|')}, got ${JSON.stringify(value)}`);
  }
  return value;
}

// passgate's public URL is its OAuth issuer: an https origin with no path.
function parsePublicUrl(value) {
  let url;
  try {
    url = new URL(String(value));
  } catch {
    throw new Error(`context publicUrl is not a URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'https:' || url.pathname !== '/' || url.search || url.hash || url.username) {
    throw new Error(`context publicUrl must be an https origin like https://mcp.example.com, got ${JSON.stringify(value)}`);
  }
  return url.origin;
}

// Cognito prefix domains: lowercase letters, digits and hyphens, and none of
// the words Cognito reserves.
function parseDomainPrefix(value) {
  const prefix = String(value);
  if (!/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(prefix) || /aws|amazon|cognito/.test(prefix)) {
    throw new Error(
      `context cognitoDomainPrefix must be lowercase letters, digits and hyphens without "aws", "amazon" or "cognito", got ${JSON.stringify(value)}`,
    );
  }
  return prefix;
}

// The backend passgate forwards /mcp to: an absolute https URL (http only
// for loopback, which a Lambda cannot reach anyway, so https).
function parseBackendUrl(value) {
  let url;
  try {
    url = new URL(String(value));
  } catch {
    throw new Error(`context backendUrl is not a URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'https:' || url.username || url.password || url.hash) {
    throw new Error(`context backendUrl must be an https URL like https://abc.lambda-url.eu-west-1.on.aws/mcp, got ${JSON.stringify(value)}`);
  }
  return url.href;
}

// An unqualified Lambda function ARN; its region and account come from it.
const FUNCTION_ARN = /^arn:(aws[a-z-]*):lambda:([a-z0-9-]+):(\d{12}):function:([A-Za-z0-9_-]{1,64})$/;

function parseFunctionArn(value) {
  const m = FUNCTION_ARN.exec(String(value));
  if (!m) {
    throw new Error(
      `context backendFunctionArn must be a function ARN like arn:aws:lambda:eu-west-1:123456789012:function:my-mcp, got ${JSON.stringify(value)}`,
    );
  }
  return { arn: m[0], partition: m[1], region: m[2], account: m[3], name: m[4] };
}

/** Reads and validates the deployment options from a construct node's context. */
function optionsFromContext(node) {
  const get = (key) => {
    const v = node.tryGetContext(key);
    return v === undefined || v === null || v === '' ? undefined : v;
  };
  const opts = { ...DEFAULTS };
  if (get('stackName') !== undefined) opts.stackName = String(get('stackName'));
  if (get('identity') !== undefined) opts.identity = oneOf('identity', get('identity'), IDENTITIES);
  if (get('skipBuild') !== undefined) opts.skipBuild = parseBool('skipBuild', get('skipBuild'));
  if (get('publicUrl') !== undefined) opts.publicUrl = parsePublicUrl(get('publicUrl'));
  if (get('removalPolicy') !== undefined) opts.removalPolicy = oneOf('removalPolicy', get('removalPolicy'), ['retain', 'destroy']);
  if (get('deletionProtection') !== undefined) {
    opts.deletionProtection = parseBool('deletionProtection', get('deletionProtection'));
  }
  if (get('reservedConcurrency') !== undefined) {
    opts.reservedConcurrency = parseInteger('reservedConcurrency', get('reservedConcurrency'), 1);
  }
  if (get('logRetentionDays') !== undefined) {
    const days = parseInteger('logRetentionDays', get('logRetentionDays'), 1);
    opts.logRetentionDays = oneOf('logRetentionDays', days, RETENTION_DAYS);
  }
  if (get('logLevel') !== undefined) opts.logLevel = String(get('logLevel'));
  if (get('cognitoDomainPrefix') !== undefined) opts.cognitoDomainPrefix = parseDomainPrefix(get('cognitoDomainPrefix'));
  if (get('backendUrl') !== undefined) opts.backendUrl = String(get('backendUrl'));
  if (get('backendFunctionArn') !== undefined) opts.backendFunctionArn = String(get('backendFunctionArn'));
  if (get('gatewayConfig') !== undefined) opts.gatewayConfig = String(get('gatewayConfig'));
  return resolveDefaults(opts);
}

/** Fills in defaults that depend on other options; also used for props given in code. */
function resolveDefaults(opts) {
  const o = { ...DEFAULTS, ...opts };
  oneOf('identity', o.identity, IDENTITIES);
  if (o.deletionProtection === undefined) o.deletionProtection = o.removalPolicy === 'retain';
  if (o.backendUrl !== undefined) o.backendUrl = parseBackendUrl(o.backendUrl);
  if (o.backendFunctionArn !== undefined) {
    o.backendFunction = parseFunctionArn(o.backendFunctionArn);
    const host = new URL(o.backendUrl ?? 'https://none').hostname;
    // A Function URL is <id>.lambda-url.<region>.on.aws; its function's ARN
    // names the same region (the URL id cannot be derived from the ARN).
    if (o.backendUrl === undefined && o.gatewayConfig === undefined) {
      throw new Error('context backendFunctionArn needs backendUrl (the function\'s URL) or a gatewayConfig that signs for it');
    }
    if (o.backendUrl !== undefined && !host.endsWith(`.lambda-url.${o.backendFunction.region}.on.aws`)) {
      throw new Error(
        `context backendUrl must be the Function URL of backendFunctionArn (https://<id>.lambda-url.${o.backendFunction.region}.on.aws/...), got ${JSON.stringify(o.backendUrl)}`,
      );
    }
  }
  if (o.gatewayConfig !== undefined) {
    const fs = require('node:fs');
    if (!fs.statSync(o.gatewayConfig, { throwIfNoEntry: false })?.isFile()) {
      throw new Error(`context gatewayConfig must name a gateway file (TOML, docs/gateway.md), got ${JSON.stringify(o.gatewayConfig)}`);
    }
  }
  return o;
}

module.exports = { optionsFromContext, resolveDefaults, parseDomainPrefix, DEFAULTS };
