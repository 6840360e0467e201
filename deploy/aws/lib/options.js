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
  return resolveDefaults(opts);
}

/** Fills in defaults that depend on other options; also used for props given in code. */
function resolveDefaults(opts) {
  const o = { ...DEFAULTS, ...opts };
  oneOf('identity', o.identity, IDENTITIES);
  if (o.deletionProtection === undefined) o.deletionProtection = o.removalPolicy === 'retain';
  return o;
}

module.exports = { optionsFromContext, resolveDefaults, parseDomainPrefix, DEFAULTS };
