'use strict';
// Synthesizes the app in-process (with skipBuild, so no Rust build) and
// checks the CloudFormation it would deploy.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { App, Stack } = require('aws-cdk-lib');
const { Template, Match } = require('aws-cdk-lib/assertions');
const cxapi = require('aws-cdk-lib/cx-api');
const { Bundling } = require('cargo-lambda-cdk/lib/bundling');
const { createApp } = require('../lib/app');
const { PassgateStack, RUST_BUILD, TABLE_ACTIONS, GATEWAY_CONFIG_PATH } = require('../lib/passgate-stack');

// Context as the CLI passes it: strings.
function synth(context = {}) {
  const app = createApp({ context: { skipBuild: 'true', ...context } });
  const stacks = app.node.children.filter((c) => Stack.isStack(c));
  assert.equal(stacks.length, 1, 'the app has exactly one stack');
  const template = Template.fromStack(stacks[0]);
  return { app, stack: stacks[0], template, json: template.toJSON() };
}

function logicalIds(json, type) {
  return Object.entries(json.Resources)
    .filter(([, r]) => r.Type === type)
    .map(([id]) => id);
}

function onlyId(json, type) {
  const ids = logicalIds(json, type);
  assert.equal(ids.length, 1, `exactly one ${type}`);
  return ids[0];
}

// Logical ids that a piece of template refers to (Ref, Fn::GetAtt, Fn::Sub).
function references(value, found = new Set()) {
  if (Array.isArray(value)) {
    value.forEach((v) => references(v, found));
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === 'Ref' && typeof v === 'string' && !v.startsWith('AWS::')) found.add(v);
      else if (k === 'Fn::GetAtt') found.add(Array.isArray(v) ? v[0] : v.split('.')[0]);
      else if (k === 'Fn::Sub') {
        const text = Array.isArray(v) ? v[0] : v;
        for (const m of text.matchAll(/\$\{([^}.!]+)[^}]*\}/g)) if (!m[1].startsWith('AWS::')) found.add(m[1]);
        if (Array.isArray(v)) references(v[1], found);
      } else references(v, found);
    }
  }
  return found;
}

function dependencies(json, id) {
  const r = json.Resources[id];
  const deps = references(r.Properties ?? {});
  for (const d of [].concat(r.DependsOn ?? [])) deps.add(d);
  return deps;
}

// Every resource the given one depends on, directly or not.
function transitiveDependencies(json, id, seen = new Set()) {
  for (const d of dependencies(json, id)) {
    if (!seen.has(d) && json.Resources[d]) {
      seen.add(d);
      transitiveDependencies(json, d, seen);
    }
  }
  return seen;
}

// A Fn::Join rendered as text, references written as <Id> or <Id.Attr>, so
// that a JSON document built from tokens can be parsed and compared.
function render(value) {
  if (typeof value === 'string') return value;
  if (value.Ref) return `<${value.Ref}>`;
  if (value['Fn::GetAtt']) return `<${value['Fn::GetAtt'].join('.')}>`;
  if (value['Fn::Join']) return value['Fn::Join'][1].map(render).join(value['Fn::Join'][0]);
  if (value['Fn::Select']) return `<Select ${JSON.stringify(value['Fn::Select'])}>`.replace(/"/g, "'");
  throw new Error(`cannot render ${JSON.stringify(value)}`);
}

function settingsSecret(json, name = 'Passgate/settings') {
  const secret = Object.values(json.Resources).find((r) => r.Properties?.Name === name);
  assert.ok(secret, `a secret named ${name}`);
  return JSON.parse(render(secret.Properties.SecretString));
}

function env(json) {
  return json.Resources[onlyId(json, 'AWS::Lambda::Function')].Properties.Environment.Variables;
}

const IDENTITIES = ['passkeys', 'cognito'];

for (const identity of IDENTITIES) {
  describe(`identity=${identity}`, () => {
    const { json, template } = synth({ identity });

    it('has no custom resources and no Lambda besides passgate', () => {
      const types = Object.values(json.Resources).map((r) => r.Type);
      assert.deepEqual(
        types.filter((t) => t.startsWith('Custom::') || t === 'AWS::CloudFormation::CustomResource'),
        [],
      );
      assert.equal(types.filter((t) => t === 'AWS::Lambda::Function').length, 1);
    });

    it('has the DynamoDB table: on demand, pk/sk, TTL, point-in-time recovery', () => {
      template.resourceCountIs('AWS::DynamoDB::Table', 1);
      template.hasResource('AWS::DynamoDB::Table', {
        Properties: {
          BillingMode: 'PAY_PER_REQUEST',
          KeySchema: [
            { AttributeName: 'pk', KeyType: 'HASH' },
            { AttributeName: 'sk', KeyType: 'RANGE' },
          ],
          AttributeDefinitions: Match.arrayEquals([
            { AttributeName: 'pk', AttributeType: 'S' },
            { AttributeName: 'sk', AttributeType: 'S' },
          ]),
          TimeToLiveSpecification: { AttributeName: 'expires_at', Enabled: true },
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
          DeletionProtectionEnabled: true,
        },
        DeletionPolicy: 'Retain',
        UpdateReplacePolicy: 'Retain',
      });
    });

    it('runs passgate on arm64 provided.al2023 with its own log group', () => {
      const logs = onlyId(json, 'AWS::Logs::LogGroup');
      template.hasResourceProperties('AWS::Lambda::Function', {
        Architectures: ['arm64'],
        Runtime: 'provided.al2023',
        Handler: 'bootstrap',
        LoggingConfig: { LogGroup: { Ref: logs } },
        ReservedConcurrentExecutions: Match.absent(),
      });
      template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
    });

    it('serves a Function URL without IAM auth, invocable through the URL only', () => {
      const fn = onlyId(json, 'AWS::Lambda::Function');
      template.hasResourceProperties('AWS::Lambda::Url', {
        AuthType: 'NONE',
        TargetFunctionArn: { 'Fn::GetAtt': [fn, 'Arn'] },
      });
    });

    it('streams responses through its Function URL', () => {
      // The binary answers in streaming mode (lambda_http's streaming run):
      // a BUFFERED URL would not deliver its responses.
      const url = onlyId(json, 'AWS::Lambda::Url');
      assert.equal(json.Resources[url].Properties.InvokeMode, 'RESPONSE_STREAM');
    });

    it('lets anyone invoke it through the URL only', () => {
      template.hasResourceProperties('AWS::Lambda::Permission', {
        Action: 'lambda:InvokeFunctionUrl',
        Principal: '*',
        FunctionUrlAuthType: 'NONE',
      });
      template.hasResourceProperties('AWS::Lambda::Permission', {
        Action: 'lambda:InvokeFunction',
        Principal: '*',
        InvokedViaFunctionUrl: true,
      });
    });

    it('generates the master key and writes the settings secret under its fixed name', () => {
      template.resourceCountIs('AWS::SecretsManager::Secret', 2);
      template.hasResourceProperties('AWS::SecretsManager::Secret', {
        GenerateSecretString: Match.objectLike({ PasswordLength: 64 }),
        Name: Match.absent(),
      });
      assert.match(settingsSecret(json).PASSGATE_PUBLIC_URL, /^https:\/\//);
    });

    it('grants only listed actions on its own table, secrets and log group', () => {
      const role = onlyId(json, 'AWS::IAM::Role');
      assert.equal(json.Resources[role].Properties.ManagedPolicyArns, undefined, 'no managed policies');
      assert.equal(json.Resources[role].Properties.Policies, undefined);

      const table = onlyId(json, 'AWS::DynamoDB::Table');
      const logs = onlyId(json, 'AWS::Logs::LogGroup');
      const masterKey = logicalIds(json, 'AWS::SecretsManager::Secret').find(
        (id) => json.Resources[id].Properties.GenerateSecretString,
      );
      const settingsPattern = (r) => JSON.stringify(r).endsWith(':secret:Passgate/settings-??????"]]}');
      const allowed = {
        dynamodb: (r) => JSON.stringify(r) === JSON.stringify({ 'Fn::GetAtt': [table, 'Arn'] }),
        secretsmanager: (r) => JSON.stringify(r) === JSON.stringify({ Ref: masterKey }) || settingsPattern(r),
        logs: (r) => JSON.stringify(r) === JSON.stringify({ 'Fn::GetAtt': [logs, 'Arn'] }),
      };

      const statements = logicalIds(json, 'AWS::IAM::Policy').flatMap(
        (id) => json.Resources[id].Properties.PolicyDocument.Statement,
      );
      assert.equal(statements.length, 3);
      const granted = new Set();
      for (const s of statements) {
        assert.equal(s.Effect, 'Allow');
        assert.equal(s.NotAction, undefined);
        assert.equal(s.NotResource, undefined);
        const actions = [].concat(s.Action);
        const resources = [].concat(s.Resource);
        for (const a of actions) {
          assert.doesNotMatch(a, /[*?]/, `wildcard action ${a}`);
          granted.add(a);
        }
        const services = new Set(actions.map((a) => a.split(':')[0]));
        assert.equal(services.size, 1, 'one service per statement');
        const check = allowed[[...services][0]];
        assert.ok(check, `unexpected service in ${JSON.stringify(actions)}`);
        for (const r of resources) {
          assert.notEqual(r, '*');
          assert.ok(check(r), `resource ${JSON.stringify(r)} is not passgate's own`);
        }
      }
      assert.deepEqual(
        [...granted].sort(),
        [...TABLE_ACTIONS, 'secretsmanager:GetSecretValue', 'logs:CreateLogStream', 'logs:PutLogEvents'].sort(),
      );
    });

    it('wires the runtime contract into the environment', () => {
      const vars = env(json);
      const masterKey = logicalIds(json, 'AWS::SecretsManager::Secret').find(
        (id) => json.Resources[id].Properties.GenerateSecretString,
      );
      assert.equal(vars.PASSGATE_STORE, 'dynamodb');
      assert.deepEqual(vars.PASSGATE_DYNAMODB_TABLE, { Ref: onlyId(json, 'AWS::DynamoDB::Table') });
      assert.deepEqual(vars.PASSGATE_MASTER_KEY_SECRET, { Ref: masterKey });
      assert.equal(vars.PASSGATE_SETTINGS_SECRET, 'Passgate/settings', 'a literal, not a reference');
      assert.equal(vars.PASSGATE_LOG, 'info');
      assert.equal(vars.PASSGATE_LOG_FORMAT, 'json');
      assert.equal(vars.PASSGATE_PUBLIC_URL, undefined, 'the public URL comes from the settings secret');
    });

    it('keeps the function independent of its URL, the app client and the settings secret', () => {
      const fn = onlyId(json, 'AWS::Lambda::Function');
      const upstream = transitiveDependencies(json, fn);
      const types = [...upstream].map((id) => json.Resources[id].Type);
      for (const t of ['AWS::Lambda::Url', 'AWS::Cognito::UserPoolClient', 'AWS::SecretsManager::Secret']) {
        if (t === 'AWS::SecretsManager::Secret') {
          // Only the master key, never the settings secret.
          const secrets = [...upstream].filter((id) => json.Resources[id].Type === t);
          assert.ok(secrets.every((id) => json.Resources[id].Properties.GenerateSecretString));
        } else {
          assert.ok(!types.includes(t), `the function depends on ${t}`);
        }
      }
    });

    it('has an acyclic dependency graph', () => {
      for (const id of Object.keys(json.Resources)) {
        assert.ok(!transitiveDependencies(json, id).has(id), `${id} depends on itself`);
      }
    });

    it('outputs the MCP URL and the table name', () => {
      const outputs = json.Outputs;
      assert.match(JSON.stringify(outputs.McpUrl.Value), /\/mcp"\]\]\}$/);
      assert.deepEqual(outputs.TableName.Value, { Ref: onlyId(json, 'AWS::DynamoDB::Table') });
    });
  });
}

describe('identity=passkeys', () => {
  const { json } = synth({ identity: 'passkeys' });

  it('creates no Cognito resources and leaves passkeys on', () => {
    assert.equal(Object.values(json.Resources).filter((r) => r.Type.startsWith('AWS::Cognito::')).length, 0);
    const vars = env(json);
    assert.equal(vars.PASSGATE_PASSKEYS, undefined);
    assert.ok(Object.keys(vars).every((k) => !k.startsWith('PASSGATE_OIDC_') && !k.startsWith('PASSGATE_UPSTREAM_')));
  });

  it('keeps only the public URL in the settings secret', () => {
    const url = onlyId(json, 'AWS::Lambda::Url');
    assert.deepEqual(settingsSecret(json), {
      PASSGATE_PUBLIC_URL: `https://<Select [2,{'Fn::Split':['/',{'Fn::GetAtt':['${url}','FunctionUrl']}]}]>`,
    });
  });

  it('outputs a ready-to-paste invite command', () => {
    const command = JSON.stringify(json.Outputs.InviteCommand.Value);
    for (const part of [
      'PASSGATE_STORE=dynamodb',
      'PASSGATE_DYNAMODB_TABLE=',
      'PASSGATE_MASTER_KEY_SECRET=',
      'PASSGATE_SETTINGS_SECRET=Passgate/settings',
      'passgate users invite alice',
    ]) {
      assert.ok(command.includes(part), `InviteCommand lacks ${part}`);
    }
    assert.ok(json.Outputs.FirstAdminLink);
  });
});

describe('identity=cognito', () => {
  const { json, template } = synth({ identity: 'cognito' });
  const pool = onlyId(json, 'AWS::Cognito::UserPool');
  const client = onlyId(json, 'AWS::Cognito::UserPoolClient');
  const url = onlyId(json, 'AWS::Lambda::Url');
  const rpId = json.Resources[pool].Properties.WebAuthnRelyingPartyID;

  it('makes a user pool on the Essentials plan with passkey sign-in', () => {
    template.hasResourceProperties('AWS::Cognito::UserPool', {
      UserPoolTier: 'ESSENTIALS',
      Policies: { SignInPolicy: { AllowedFirstAuthFactors: Match.arrayWith(['PASSWORD', 'WEB_AUTHN']) } },
      WebAuthnUserVerification: 'required',
      AdminCreateUserConfig: { AllowAdminCreateUserOnly: true },
      DeletionProtection: 'ACTIVE',
    });
  });

  it('uses the managed login domain as the passkey relying party', () => {
    const domain = json.Resources[onlyId(json, 'AWS::Cognito::UserPoolDomain')].Properties;
    assert.equal(domain.ManagedLoginVersion, 2);
    assert.deepEqual(domain.UserPoolId, { Ref: pool });
    // "<prefix>.auth.<region>.amazoncognito.com", with the domain's own prefix.
    const parts = rpId['Fn::Join'][1];
    assert.deepEqual(domain.Domain, { 'Fn::Join': ['', parts.slice(0, 2)] });
    assert.deepEqual(parts.slice(2), ['.auth.', { Ref: 'AWS::Region' }, '.amazoncognito.com']);
  });

  it('attaches a managed login branding style to the app client', () => {
    template.hasResourceProperties('AWS::Cognito::ManagedLoginBranding', {
      UserPoolId: { Ref: pool },
      ClientId: { Ref: client },
      UseCognitoProvidedValues: true,
    });
  });

  it('registers passgate as a confidential client with its callback on the Function URL', () => {
    const props = json.Resources[client].Properties;
    assert.equal(props.GenerateSecret, true);
    assert.ok(props.ExplicitAuthFlows.includes('ALLOW_USER_AUTH'));
    assert.deepEqual(props.AllowedOAuthFlows, ['code']);
    assert.equal(props.AllowedOAuthFlowsUserPoolClient, true);
    assert.deepEqual([...props.AllowedOAuthScopes].sort(), ['email', 'openid', 'profile']);
    const callback = props.CallbackURLs.find((u) => JSON.stringify(u).endsWith('"/upstream/callback"]]}'));
    assert.ok(callback, 'a callback ending in /upstream/callback');
    assert.ok(references(callback).has(url), 'the callback is built from the Function URL');
    assert.ok(props.LogoutURLs.every((u) => references(u).has(url)));
  });

  it('configures passgate as an OIDC proxy for the pool', () => {
    const vars = env(json);
    assert.equal(vars.PASSGATE_OIDC_PRESET, 'cognito');
    assert.equal(vars.PASSGATE_OIDC_SCOPES, 'openid email profile');
    assert.equal(vars.PASSGATE_PASSKEYS, 'false');
    assert.deepEqual(vars.PASSGATE_OIDC_ISSUER, {
      'Fn::Join': ['', ['https://cognito-idp.', { Ref: 'AWS::Region' }, '.', { Ref: 'AWS::URLSuffix' }, '/', { Ref: pool }]],
    });
    const [first, ...rest] = rpId['Fn::Join'][1];
    assert.deepEqual(vars.PASSGATE_OIDC_DOMAIN, { 'Fn::Join': ['', [`https://${first}`, ...rest]] });
    assert.equal(vars.PASSGATE_OIDC_CLIENT_ID, undefined);
    assert.equal(vars.PASSGATE_OIDC_CLIENT_SECRET, undefined);
  });

  it('puts the client id and secret into the settings secret', () => {
    assert.deepEqual(settingsSecret(json), {
      PASSGATE_PUBLIC_URL: `https://<Select [2,{'Fn::Split':['/',{'Fn::GetAtt':['${url}','FunctionUrl']}]}]>`,
      PASSGATE_OIDC_CLIENT_ID: `<${client}>`,
      PASSGATE_OIDC_CLIENT_SECRET: `<${client}.ClientSecret>`,
    });
  });

  it('outputs how to create the first user and register a passkey', () => {
    const outputs = json.Outputs;
    assert.match(JSON.stringify(outputs.CreateUserCommand.Value), /aws cognito-idp admin-create-user/);
    assert.match(JSON.stringify(outputs.SignInUrl.Value), /\/login\?client_id=/);
    assert.match(JSON.stringify(outputs.AddPasskeyUrl.Value), /\/passkeys\/add\?client_id=/);
    assert.equal(outputs.InviteCommand, undefined);
  });
});

describe('context options', () => {
  it('uses a custom public URL instead of the Function URL', () => {
    const { json } = synth({ identity: 'cognito', publicUrl: 'https://mcp.example.com/' });
    assert.equal(settingsSecret(json).PASSGATE_PUBLIC_URL, 'https://mcp.example.com');
    const client = json.Resources[onlyId(json, 'AWS::Cognito::UserPoolClient')].Properties;
    assert.ok(client.CallbackURLs.includes('https://mcp.example.com/upstream/callback'));
    assert.equal(json.Outputs.McpUrl.Value, 'https://mcp.example.com/mcp');
  });

  it('rejects a public URL with a path', () => {
    assert.throws(() => synth({ publicUrl: 'https://mcp.example.com/x' }), /publicUrl/);
  });

  it('rejects an unknown identity', () => {
    assert.throws(() => synth({ identity: 'google' }), /identity/);
  });

  it('lets the table, secrets, pool and logs be destroyed with the stack', () => {
    const { json } = synth({ identity: 'cognito', removalPolicy: 'destroy' });
    for (const type of ['AWS::DynamoDB::Table', 'AWS::Cognito::UserPool', 'AWS::Logs::LogGroup', 'AWS::SecretsManager::Secret']) {
      for (const id of logicalIds(json, type)) assert.equal(json.Resources[id].DeletionPolicy, 'Delete', `${type} ${id}`);
    }
    assert.equal(json.Resources[onlyId(json, 'AWS::DynamoDB::Table')].Properties.DeletionProtectionEnabled, false);
    assert.equal(json.Resources[onlyId(json, 'AWS::Cognito::UserPool')].Properties.DeletionProtection, 'INACTIVE');
  });

  it('keeps deletion protection when asked, even with removalPolicy=destroy', () => {
    const { json } = synth({ removalPolicy: 'destroy', deletionProtection: 'true' });
    assert.equal(json.Resources[onlyId(json, 'AWS::DynamoDB::Table')].Properties.DeletionProtectionEnabled, true);
  });

  it('sets reserved concurrency, log retention and log level', () => {
    const { template } = synth({ reservedConcurrency: '5', logRetentionDays: '90', logLevel: 'passgate=debug,info' });
    template.hasResourceProperties('AWS::Lambda::Function', {
      ReservedConcurrentExecutions: 5,
      Environment: { Variables: Match.objectLike({ PASSGATE_LOG: 'passgate=debug,info' }) },
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 90 });
    assert.throws(() => synth({ logRetentionDays: '4' }), /logRetentionDays/);
    assert.throws(() => synth({ reservedConcurrency: 'lots' }), /reservedConcurrency/);
  });

  it('names the stack and its settings secret after stackName', () => {
    const { stack, json } = synth({ stackName: 'PassgateStaging' });
    assert.equal(stack.stackName, 'PassgateStaging');
    assert.equal(env(json).PASSGATE_SETTINGS_SECRET, 'PassgateStaging/settings');
  });

  it('takes a Cognito domain prefix, and refuses reserved words', () => {
    const { json } = synth({ identity: 'cognito', cognitoDomainPrefix: 'my-mcp-login' });
    assert.equal(json.Resources[onlyId(json, 'AWS::Cognito::UserPoolDomain')].Properties.Domain, 'my-mcp-login');
    assert.throws(() => synth({ identity: 'cognito', cognitoDomainPrefix: 'my-cognito' }), /cognitoDomainPrefix/);
    assert.throws(() => synth({ identity: 'cognito', stackName: 'PassgateOnAws' }), /cognitoDomainPrefix/);
  });

  it('keeps the passkey relying-party id within 63 characters', () => {
    assert.throws(() => synth({ identity: 'cognito', cognitoDomainPrefix: 'a'.repeat(26) }), /63 characters/);
    assert.throws(() => synth({ identity: 'cognito', stackName: 'P'.repeat(13) }), /63 characters/);
    synth({ identity: 'cognito', cognitoDomainPrefix: 'a'.repeat(25) });
    synth({ identity: 'cognito', stackName: 'P'.repeat(12) });
  });
});

describe('a protected backend', () => {
  const BACKEND_ARN = 'arn:aws:lambda:eu-west-1:123456789012:function:my-fastmcp';
  const BACKEND_URL = 'https://abcdefghij0123456789abcdefghij01.lambda-url.eu-west-1.on.aws/mcp';

  const policyStatements = (json) =>
    logicalIds(json, 'AWS::IAM::Policy').flatMap((id) => json.Resources[id].Properties.PolicyDocument.Statement);

  // The template with the given environment variables, policy statements
  // (by Sid) and resource types taken out, and the function's layers.
  function without(json, { vars = [], sids = [], types = [] }) {
    const copy = structuredClone(json);
    const fn = copy.Resources[onlyId(copy, 'AWS::Lambda::Function')];
    for (const v of vars) delete fn.Properties.Environment.Variables[v];
    delete fn.Properties.Layers;
    for (const id of logicalIds(copy, 'AWS::IAM::Policy')) {
      const doc = copy.Resources[id].Properties.PolicyDocument;
      doc.Statement = doc.Statement.filter((s) => !sids.includes(s.Sid));
    }
    for (const [id, r] of Object.entries(copy.Resources)) if (types.includes(r.Type)) delete copy.Resources[id];
    return copy;
  }

  const plain = synth().json;

  it('forwards to backendUrl, streaming, and changes nothing else', () => {
    const { json } = synth({ backendUrl: 'https://mcp.internal.example.com/mcp' });
    assert.equal(env(json).PASSGATE_BACKEND, 'https://mcp.internal.example.com/mcp');
    assert.equal(env(json).PASSGATE_BACKEND_SIGV4_SERVICE, undefined);
    assert.equal(json.Resources[onlyId(json, 'AWS::Lambda::Url')].Properties.InvokeMode, 'RESPONSE_STREAM');
    assert.deepEqual(without(json, { vars: ['PASSGATE_BACKEND'] }), plain);
  });

  it('signs for an IAM Function URL and may invoke exactly that function through its URL', () => {
    const { json } = synth({ backendUrl: BACKEND_URL, backendFunctionArn: BACKEND_ARN });
    const vars = env(json);
    assert.equal(vars.PASSGATE_BACKEND, BACKEND_URL);
    assert.equal(vars.PASSGATE_BACKEND_SIGV4_SERVICE, 'lambda');
    assert.equal(vars.PASSGATE_BACKEND_SIGV4_REGION, 'eu-west-1');
    const lambdaStatements = policyStatements(json).filter((s) => [].concat(s.Action).some((a) => a.startsWith('lambda:')));
    assert.deepEqual(lambdaStatements, [
      {
        Sid: 'InvokeBackendUrl',
        Effect: 'Allow',
        Action: 'lambda:InvokeFunctionUrl',
        Resource: BACKEND_ARN,
        Condition: { StringEquals: { 'lambda:FunctionUrlAuthType': 'AWS_IAM' } },
      },
      {
        Sid: 'InvokeBackendViaUrl',
        Effect: 'Allow',
        Action: 'lambda:InvokeFunction',
        Resource: BACKEND_ARN,
        Condition: { Bool: { 'lambda:InvokedViaFunctionUrl': 'true' } },
      },
    ]);
    assert.equal(json.Resources[onlyId(json, 'AWS::Lambda::Url')].Properties.InvokeMode, 'RESPONSE_STREAM');
    // Everything else is the plain stack's: no other grant, resource or setting.
    assert.deepEqual(
      without(json, {
        vars: ['PASSGATE_BACKEND', 'PASSGATE_BACKEND_SIGV4_SERVICE', 'PASSGATE_BACKEND_SIGV4_REGION'],
        sids: ['InvokeBackendUrl', 'InvokeBackendViaUrl'],
      }),
      plain,
    );
  });

  it('ships a gateway file in a layer of its own and points passgate at it', () => {
    const dir = fs.mkdtempSync(require('node:path').join(require('node:os').tmpdir(), 'gw-test-'));
    const file = require('node:path').join(dir, 'gateway.toml');
    fs.writeFileSync(file, '[[route]]\nname = "notes"\nurl = "https://notes.example.com/mcp"\n');
    const { json } = synth({ gatewayConfig: file });
    assert.equal(env(json).PASSGATE_GATEWAY_CONFIG, GATEWAY_CONFIG_PATH);
    const layer = onlyId(json, 'AWS::Lambda::LayerVersion');
    const fn = json.Resources[onlyId(json, 'AWS::Lambda::Function')];
    assert.deepEqual(fn.Properties.Layers, [{ Ref: layer }]);
    assert.deepEqual(
      without(json, { vars: ['PASSGATE_GATEWAY_CONFIG'], types: ['AWS::Lambda::LayerVersion'] }),
      plain,
    );
    // A file whose route signs for a Function URL: the grant, and no
    // single-backend setting.
    const signed = synth({ gatewayConfig: file, backendFunctionArn: BACKEND_ARN }).json;
    assert.deepEqual(
      policyStatements(signed).filter((s) => s.Sid?.startsWith('InvokeBackend')).map((s) => s.Resource),
      [BACKEND_ARN, BACKEND_ARN],
    );
    assert.equal(env(signed).PASSGATE_BACKEND, undefined);
  });

  it('refuses what it cannot deploy, naming the option', () => {
    assert.throws(() => synth({ backendUrl: 'http://mcp.example.com/mcp' }), /backendUrl must be an https URL/);
    assert.throws(() => synth({ backendUrl: 'not a url' }), /backendUrl is not a URL/);
    assert.throws(() => synth({ backendFunctionArn: BACKEND_ARN }), /needs backendUrl/);
    assert.throws(
      () => synth({ backendUrl: BACKEND_URL, backendFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:*' }),
      /backendFunctionArn must be a function ARN/,
    );
    assert.throws(
      () => synth({ backendUrl: BACKEND_URL.replace('eu-west-1', 'us-east-1'), backendFunctionArn: BACKEND_ARN }),
      /Function URL of backendFunctionArn/,
    );
    assert.throws(() => synth({ gatewayConfig: '/nonexistent/gateway.toml' }), /gatewayConfig must name a gateway file/);
  });
});

describe('the real build (bundling skipped by CDK, so nothing is compiled)', () => {
  it('builds the passgate binary from the repository manifest with the Lambda features', () => {
    assert.ok(fs.existsSync(RUST_BUILD.manifestPath), RUST_BUILD.manifestPath);
    assert.match(fs.readFileSync(RUST_BUILD.manifestPath, 'utf8'), /\[\[bin\]\]\s*\nname = "passgate"/);
    const { Architecture } = require('aws-cdk-lib/aws-lambda');
    // The command cargo-lambda-cdk runs (locally or in its Docker image).
    const bundling = new Bundling(require('node:path').dirname(RUST_BUILD.manifestPath), {
      ...RUST_BUILD.bundling,
      manifestPath: RUST_BUILD.manifestPath,
      binaryName: RUST_BUILD.binaryName,
      architecture: Architecture.ARM_64,
    });
    assert.match(
      bundling.command[2],
      /^cargo lambda build --lambda-dir \S+ --release --arm64 --bin passgate --flatten passgate --features lambda,dynamodb$/,
    );
  });

  it('makes the same function as the skipBuild placeholder, code aside', () => {
    const withoutCode = (json) => {
      const fn = json.Resources[onlyId(json, 'AWS::Lambda::Function')];
      const { Code, ...props } = fn.Properties;
      return props;
    };
    const app = new App({ context: { identity: 'cognito', [cxapi.BUNDLING_STACKS]: [] } });
    const real = Template.fromStack(new PassgateStack(app, 'Passgate', { options: { identity: 'cognito' } })).toJSON();
    assert.deepEqual(withoutCode(real), withoutCode(synth({ identity: 'cognito' }).json));
  });
});
